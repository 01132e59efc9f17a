"""The sweep as `make sweep` runs it: a real Hydra multirun, killed and resumed, with a failing cell."""

import json
import re
from pathlib import Path

from tests.conftest import run_cli, tiny_overrides

RESUMED = ["--multirun", "+sweep=all_backbones", "backbone=mobilenetv2,resnet50", "seed=0,1"]


def metrics_files(results: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(results.glob("runs/synthetic/*/*/metrics.json"))}


def test_every_cell_runs_and_a_failing_backbone_does_not_stop_the_others(tiny_sweep):
    tmp, log = tiny_sweep.root, tiny_sweep.log
    done = metrics_files(tmp / "results")
    assert sorted(p.parent.parent.name for p in done) == ["mobilenetv2"] * 2 + ["resnet50"] * 2
    for run_dir in (p.parent for p in done):  # drawn by the sweep's figure worker before publishing
        assert all((run_dir / f"{name}.png").is_file() for name in ("confusion_matrix", "curves", "coverage"))
    assert not list((tmp / "results" / "runs").glob("*/*/.*")), "a staging folder outlived the sweep"
    failed = sorted((tmp / "results" / "runs" / "synthetic" / "inceptionv3").glob("*/failed.json"))
    assert len(failed) == 2
    record = json.loads(failed[0].read_text())
    assert record["error_type"] == "BenchmarkError" and "minimum of 75" in record["error"]
    assert "cell 1/6: mobilenetv2 seed=0 (running" in log and "cell 6/6" in log
    assert "ETA" in log and "FAILED: inceptionv3 seed=0, inceptionv3 seed=1" in log
    # seeds are the outer loop: the further seeds' time is unknown until one of them has run
    assert "cell 4/6: mobilenetv2 seed=1 (running; 3 done, ETA 3 further-seed cells not timed yet)" in log
    assert re.search(r"cell 5/6: resnet50 seed=1 \(running; 4 done, ETA \d+ s\)", log)
    assert re.search(r"sweep finished: 4/6 cells complete in \d+ s; FAILED", log)


def test_the_sweep_builds_the_leaderboard_of_the_directory_it_wrote(tiny_sweep):
    """results_dir is a temporary folder here, not ./results: the leaderboard must come from it."""
    results = tiny_sweep.root / "results"
    assert f"leaderboard: {results / 'leaderboard.md'}" in tiny_sweep.log
    markdown = (results / "leaderboard.md").read_text()
    assert "| mobilenetv2 |" in markdown and "| resnet50 |" in markdown


def test_running_the_same_sweep_again_trains_nothing(tiny_sweep, tmp_path):
    tmp = tiny_sweep.copy_to(tmp_path).root
    before = metrics_files(tmp / "results")
    again = run_cli([*RESUMED, *tiny_overrides(tmp)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics_files(tmp / "results") == before
    assert (again.stdout + again.stderr).count("already complete") == 4
    assert not re.search(r"epoch +\d+ +loss", again.stdout + again.stderr), "a complete cell was retrained"


def test_a_deleted_metrics_file_reruns_only_that_cell(tiny_sweep, tmp_path):
    tmp = tiny_sweep.copy_to(tmp_path).root
    before = metrics_files(tmp / "results")
    victim = next(p for p in before if p.parent.parent.name == "resnet50")
    victim.unlink()
    again = run_cli([*RESUMED, *tiny_overrides(tmp)])
    assert again.returncode == 0, again.stderr[-3000:]
    after = metrics_files(tmp / "results")
    assert set(after) == set(before)
    changed = [p for p in after if p == victim or after[p] != before[p]]
    assert changed == [victim]
    assert (again.stdout + again.stderr).count("already complete") == 3


def test_a_metrics_file_cut_short_reruns_only_that_cell(tiny_sweep, tmp_path):
    tmp = tiny_sweep.copy_to(tmp_path).root
    before = metrics_files(tmp / "results")
    victim = next(p for p in before if p.parent.parent.name == "resnet50")
    victim.write_text(victim.read_text()[:300])  # a full disk, a broken copy
    again = run_cli([*RESUMED, *tiny_overrides(tmp)])
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "FAILED" not in log and f"{victim} is corrupt" in log
    assert json.loads(victim.read_text())["backbone"] == "resnet50"
    after = metrics_files(tmp / "results")
    assert [p for p in after if after[p] != before[p]] == [victim]
