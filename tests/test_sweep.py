"""The sweep as `make sweep` runs it: a real Hydra multirun, killed and resumed, with a failing cell."""

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli, tiny_overrides

CELLS = ["+sweep=all_backbones", "backbone=mobilenetv2,resnet50,inceptionv3", "seed=0,1"]
RESUMED = ["--multirun", "+sweep=all_backbones", "backbone=mobilenetv2,resnet50", "seed=0,1"]


def metrics_files(results: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(results.glob("runs/synthetic/*/*/metrics.json"))}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str]:
    """One multirun of 3 backbones x 2 seeds; inceptionv3 cannot take 32 px and must fail alone."""
    tmp = tmp_path_factory.mktemp("sweep")
    result = run_cli(["--multirun", *CELLS, *tiny_overrides(tmp)], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, result.stdout + result.stderr


def test_every_cell_runs_and_a_failing_backbone_does_not_stop_the_others(swept):
    tmp, log = swept
    done = metrics_files(tmp / "results")
    assert sorted(p.parent.parent.name for p in done) == ["mobilenetv2"] * 2 + ["resnet50"] * 2
    failed = sorted((tmp / "results" / "runs" / "synthetic" / "inceptionv3").glob("*/failed.json"))
    assert len(failed) == 2
    record = json.loads(failed[0].read_text())
    assert record["error_type"] == "BenchmarkError" and "minimum of 75" in record["error"]
    assert "cell 1/6: mobilenetv2 seed=0 (running)" in log and "cell 6/6" in log
    assert "ETA" in log and "FAILED: inceptionv3 seed=0, inceptionv3 seed=1" in log


def test_running_the_same_sweep_again_trains_nothing(swept):
    tmp, _ = swept
    before = metrics_files(tmp / "results")
    again = run_cli([*RESUMED, *tiny_overrides(tmp)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics_files(tmp / "results") == before
    assert (again.stdout + again.stderr).count("already complete") == 4
    assert not re.search(r"epoch +\d+ +loss", again.stdout + again.stderr), "a complete cell was retrained"


def test_a_deleted_metrics_file_reruns_only_that_cell(swept):
    tmp, _ = swept
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
