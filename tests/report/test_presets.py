"""What the leaderboard says of how a row was made: the paper preset it was run under, the fine-tuning
phase whose weights were tested, and temperatures fitted at their search bound. On a real tiny multirun of
a preset, made as a user would (`python -m benchmark --multirun experiment=...`)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from benchmark.metrics.calibration import BOUNDS
from benchmark.report.build import build_report
from benchmark.report.rows import PHASES
from benchmark.runs.identity import resolve
from tests.conftest import CONF, run_cli, tiny_overrides
from tests.report.test_report import report_config, section, table_rows

PRESET = "gao2025_mobilenetv2"  # fine-tuning of MobileNetV2; one epoch per phase here, so both phases run
ONE_EPOCH_PER_PHASE = ["train.max_epochs=1", "train.warmup_epochs=1", "train.save_model=false",
                       "train.run_eagerly=true"]


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
    found = [m["best_phase"] for m in run_metrics(preset_sweep)]
    counted = ", ".join(f"{name} {found.count(phase)}/2" for phase, name in PHASES.items() if phase in found)
    notes = section(markdown, "synthetic").split("\n| 1 | mobilenetv2 |", 1)[1].split("\n\n", 2)[1]
    assert notes.splitlines() == [
        f"- paper preset (`experiment=`, conf/experiment/): `{PRESET}`: every row",
        "- fine-tuned rows, the phase whose weights were tested (the lower validation loss of the head "
        f"warm-up's and the fine-tuning's best epochs): mobilenetv2 {counted} seeds",
    ]
    assert markdown.count(PRESET) == 1  # one fact, one place
    table = pd.read_csv(preset_sweep / "leaderboard.csv")
    row = table.iloc[0]
    assert (row["experiment"], row["experiment_seeds"], row["n_seeds"]) == (PRESET, 2, 2)
    assert {p: row[f"best_phase_{p}_seeds"] for p in PHASES} == {p: found.count(p) for p in PHASES}
    assert "best_phase" not in table.columns  # the words are the page's; the file has the counts


def set_temperature(results: Path, seed: str, temperature: float, at_bound: bool | None,
                    bounds: tuple[float, float] | None = BOUNDS) -> None:
    """Rewrite one seed's fitted temperature as calibration_record writes it; at_bound or bounds None: as
    runs made before that key was recorded."""
    (path,) = results.glob(f"runs/synthetic/mobilenetv2/{seed}-*/metrics.json")
    metrics = json.loads(path.read_text())
    calibration = metrics["calibration"] | {"temperature": temperature, "temperature_at_bound": at_bound,
                                            "temperature_bounds": None if bounds is None else list(bounds)}
    metrics["calibration"] = {key: value for key, value in calibration.items() if value is not None}
    path.write_text(json.dumps(metrics))


def copied_runs(preset_sweep: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(preset_sweep / "runs", results / "runs")
    return results


def calibration_of(results: Path) -> tuple[str, str, pd.Series]:
    """The report's calibration section, its row's temperature cell and its leaderboard.csv line."""
    build_report(report_config(results))
    markdown = (results / "leaderboard.md").read_text()
    calibration = section(markdown, "synthetic").split("### Calibration", 1)[1].split("\n### ", 1)[0]
    (row,) = table_rows(calibration, "backbone")
    return calibration, row[1], pd.read_csv(results / "leaderboard.csv").iloc[0]


def test_a_temperature_at_its_bound_is_shown_as_the_bound_not_averaged(preset_sweep, tmp_path):
    """Seed 0's fit is an estimate (1.5); seed 1's stopped at T = 20, as a fit on chance-level validation
    predictions does (tests/metrics/test_calibration.py). The table's temperature is seed 0's alone and
    seed 1 is counted at the bound, not averaged into a 10.75 that reads like an estimate."""
    results = copied_runs(preset_sweep, tmp_path)
    set_temperature(results, "seed0", 1.5, False)
    set_temperature(results, "seed1", BOUNDS[1] * 0.99999, True)
    calibration, cell, found = calibration_of(results)
    assert cell == f"1.50 (1/2 seeds); ≥ {BOUNDS[1]:g} at bound (1/2 seeds)"
    assert "A temperature *at bound* is not an estimate" in calibration
    assert "which `predict calibrated=true` refuses to apply" in " ".join(calibration.split())
    assert found["temperature"] == pytest.approx(1.5) and found["temperature_seeds_at_bound"] == 1


def test_older_runs_at_a_bound_show_the_bound_searched_not_their_value(preset_sweep, tmp_path):
    """Runs made before metrics.json recorded the search's bounds (or its at-bound flag) searched
    calibration.BOUNDS: a fit that stopped short of an end is shown as that end, not as `≥ 19.85`."""
    results = copied_runs(preset_sweep, tmp_path)
    set_temperature(results, "seed0", 19.85, True, bounds=None)
    set_temperature(results, "seed1", BOUNDS[0] * 1.004, None, bounds=None)  # before the flag, too
    _, cell, found = calibration_of(results)
    low, high = BOUNDS
    assert cell == f"≤ {low:g} at bound (1/2 seeds); ≥ {high:g} at bound (1/2 seeds)"
    assert pd.isna(found["temperature"]) and found["temperature_seeds_at_bound"] == 2


def test_a_row_without_intervals_still_shows_its_seeds_temperatures(preset_sweep, tmp_path):
    """Seeds tested on different images have no shared intervals, but their temperatures are in
    metrics.json: the row shows them, and the page does not say that no run recorded one."""
    results = copied_runs(preset_sweep, tmp_path)
    set_temperature(results, "seed0", 1.5, False)
    set_temperature(results, "seed1", BOUNDS[1] * 0.99999, True)
    (path,) = results.glob("runs/synthetic/mobilenetv2/seed1-*/predictions.csv")
    predictions = pd.read_csv(path)
    predictions.loc[0, "file"] = "elsewhere/" + predictions.loc[0, "file"]  # another test image
    predictions.to_csv(path, index=False)
    calibration, cell, found = calibration_of(results)
    assert found["estimates_problem"] == "its seeds were tested on different images"
    assert cell == f"1.50 (1/2 seeds); ≥ {BOUNDS[1]:g} at bound (1/2 seeds)"
    assert found["temperature"] == pytest.approx(1.5) and found["temperature_seeds_at_bound"] == 1
    assert "A temperature *at bound* is not an estimate" in calibration
    assert "No run recorded a temperature" not in calibration


def test_runs_without_a_temperature_say_so_under_the_table(preset_sweep, tmp_path):
    results = copied_runs(preset_sweep, tmp_path)
    for path in results.glob("runs/synthetic/mobilenetv2/seed*/metrics.json"):
        metrics = json.loads(path.read_text())
        del metrics["calibration"]  # made before calibration was part of a run
        path.write_text(json.dumps(metrics))
    calibration, cell, found = calibration_of(results)
    table, note = calibration.split("\n\n")[-2:]
    assert cell == "—" and table.startswith("| backbone |")
    assert note.startswith("No run recorded a temperature") and "at bound" not in calibration
    assert pd.isna(found["temperature"]) and found["temperature_seeds_at_bound"] == 0
