"""A dataset with several slices per patient, split by patient end to end: splits.csv, the cluster
bootstrap, the records in metrics.json and manifest.json, and the leaderboard's header."""

import json

import pandas as pd

from benchmark.data.synthetic import PATIENT_PATTERN
from benchmark.runs.pipeline import run
from tests.conftest import run_cli

PATIENTS = ["dataset.n_per_class=20", "dataset.slices_per_patient=4",
            f"dataset.group_pattern='{PATIENT_PATTERN}'"]


def test_a_run_split_by_patient_says_so_everywhere(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg(*PATIENTS))
    run_dir = next((tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2").iterdir())
    splits = pd.read_csv(run_dir / "splits.csv", keep_default_na=False)
    assert len(splits) == 60 and splits.groupby("group")["split"].nunique().max() == 1
    assert metrics["split_by"] == "patient" and metrics["bootstrap_unit"] == "group"
    assert sum(metrics["split_groups"].values()) == 15 == splits["group"].nunique()
    assert metrics["n_test_groups"] == metrics["split_groups"]["test"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["dataset"]["split_by"] == "patient"
    assert sum(manifest["dataset"]["group_counts"]["test"].values()) >= metrics["split_groups"]["test"]
    report = run_cli([f"results_dir={tmp_path / 'results'}"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "split by patient (15 patients:" in markdown
    n_test, n_groups = metrics["n_test"], metrics["n_test_groups"]
    assert f"test set: {n_test} images of {n_groups} patients; seeds per row: 1" in markdown  # resampled
    per_class = markdown.split("| backbone | class |", 1)[1].split("\n\n", 1)[0]  # QA: images, said as cases
    assert "| test images (patients) |" in per_class.splitlines()[0]
    supports = [line.rsplit("|", 2)[1].strip() for line in per_class.splitlines()[2:]]
    # each synthetic patient has slices of one class (one with two classes would count under both)
    assert sum(int(cell.split(" (")[1].rstrip(")")) for cell in supports) == n_groups
    assert sum(int(cell.split(" (")[0]) for cell in supports) == n_test


def test_a_run_without_groups_warns_that_the_split_ignored_patients(tiny_sweep):
    markdown = (tiny_sweep.root / "results" / "leaderboard.md").read_text()
    assert "split by image — no groups given" in markdown


def test_a_grouped_leaderboard_compares_and_ensembles_over_patients(tiny_cfg, tmp_path):
    """DeLong's variance and an image-level ensemble would treat one patient's slices as independent."""
    for backbone in ("mobilenetv2", "resnet50"):
        run(tiny_cfg(*PATIENTS, f"backbone={backbone}"))
    results = tmp_path / "results"
    report = run_cli([f"results_dir={results}", "ensemble_k=2"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    (ensemble_dir,) = (results / "runs" / "synthetic" / "ensemble").iterdir()
    metrics = json.loads((ensemble_dir / "metrics.json").read_text())
    assert metrics["bootstrap_unit"] == "group" and metrics["split_by"] == "patient"
    assert metrics["n_test_groups"] == metrics["split_groups"]["test"]
    markdown = (results / "leaderboard.md").read_text()
    assert "split by image" not in markdown  # the ensemble's row no longer says so
    assert "resamples draw whole patients/studies" in markdown
    assert "DeLong's test of the seed-mean AUROC" not in markdown
    assert "**Few test patients:**" in markdown  # counted in patients, as the bootstrap draws them
