"""What the leaderboard says of how a row was made: the paper preset it was run under, the fine-tuning
phase whose weights were tested, and temperatures fitted at their search bound. On a real tiny multirun of
a preset, made as a user would (`python -m benchmark --multirun experiment=...`)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from benchmark.report.build import build_report
from benchmark.runs.identity import resolve
from tests.conftest import CONF, run_cli, tiny_overrides
from tests.report.test_report import report_config, section, table_rows

PRESET = "gao2025_mobilenetv2"  # fine-tuning of MobileNetV2; one epoch per phase here, so both phases run
ONE_EPOCH_PER_PHASE = ["train.max_epochs=1", "train.warmup_epochs=1", "train.save_model=false",
                       "train.run_eagerly=true"]
PHASE_NAMES = {"head": "head warm-up", "finetune": "fine-tune"}  # history.csv's phases, as the page says them


@pytest.fixture(scope="module")
def preset_sweep(tmp_path_factory) -> Path:
    """Two seeds of the preset, with the sweep's own leaderboard; read-only (copy it to change it)."""
    root = tmp_path_factory.mktemp("preset_sweep")
    cells = [f"experiment={PRESET}", "seed=0,1", *tiny_overrides(root), *ONE_EPOCH_PER_PHASE]
    result = run_cli(["--multirun", *cells], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "results"


def run_metrics(results: Path) -> list[dict]:
    paths = sorted(results.glob("runs/synthetic/mobilenetv2/seed*/metrics.json"))
    return [json.loads(path.read_text()) for path in paths]


def test_the_preset_is_recorded_without_changing_the_runs_identity(preset_sweep, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config",
                      overrides=[f"experiment={PRESET}", *tiny_overrides(tmp_path), *ONE_EPOCH_PER_PHASE])
    runs = run_metrics(preset_sweep)
    assert [m["experiment"] for m in runs] == [PRESET, PRESET]
    assert {m["config_hash"] for m in runs} == {resolve(cfg).config_hash}  # the hash a run without it had


def test_the_leaderboard_names_the_preset_and_the_phase_whose_weights_were_tested(preset_sweep):
    markdown = (preset_sweep / "leaderboard.md").read_text()  # the sweep's own, as the user finds it
    phases = [PHASE_NAMES[m["best_phase"]] for m in run_metrics(preset_sweep)]
    counted = ", ".join(f"{phase} {phases.count(phase)}/2"
                        for phase in ("head warm-up", "fine-tune") if phase in phases)
    notes = section(markdown, "synthetic").split("\n| 1 | mobilenetv2 |", 1)[1].split("\n\n", 2)[1]
    assert notes.splitlines() == [
        f"- paper preset (`experiment=`, conf/experiment/): `{PRESET}`: every row",
        "- fine-tuned rows, the phase whose weights were tested (the lower validation loss of the head "
        f"warm-up's and the fine-tuning's best epochs): mobilenetv2 {counted} seeds",
    ]
    assert markdown.count(PRESET) == 1  # one fact, one place
    row = pd.read_csv(preset_sweep / "leaderboard.csv").iloc[0]
    assert (row["experiment"], row["best_phase"]) == (PRESET, f"{counted} seeds")


def set_temperature(results: Path, seed: str, temperature: float, at_bound: bool) -> None:
    """Rewrite one seed's fitted temperature as calibration_record writes it."""
    (path,) = results.glob(f"runs/synthetic/mobilenetv2/{seed}-*/metrics.json")
    metrics = json.loads(path.read_text())
    metrics["calibration"] |= {"temperature": temperature, "temperature_at_bound": at_bound,
                               "temperature_bounds": [0.05, 20.0]}
    path.write_text(json.dumps(metrics))


def test_a_temperature_at_its_bound_is_shown_as_the_bound_not_averaged(preset_sweep, tmp_path):
    """Seed 0's fit is an estimate (1.5); seed 1's stopped at T = 20, as a fit on chance-level validation
    predictions does (tests/metrics/test_calibration.py). The table's temperature is seed 0's alone and
    seed 1 is counted at the bound, not averaged into a 10.75 that reads like an estimate."""
    results = tmp_path / "results"
    shutil.copytree(preset_sweep / "runs", results / "runs")
    set_temperature(results, "seed0", 1.5, False)
    set_temperature(results, "seed1", 19.9998, True)
    build_report(report_config(results))
    markdown = (results / "leaderboard.md").read_text()
    calibration = section(markdown, "synthetic").split("### Calibration", 1)[1]
    (row,) = table_rows(calibration, "backbone")
    assert row[1] == "1.50 (1/2 seeds); ≥ 20 at bound (1/2 seeds)"
    assert "A temperature *at bound* is not an estimate" in calibration
    found = pd.read_csv(results / "leaderboard.csv").iloc[0]
    assert found["temperature"] == pytest.approx(1.5) and found["temperature_seeds_at_bound"] == 1
