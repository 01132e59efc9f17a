"""`python -m benchmark.evaluate`: a finished run scored on another site's data, and the report's table."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests.conftest import TINY_SYNTHETIC, run_cli


def copied_run(saved_run, tmp_path: Path) -> Path:
    """A private copy of the shared run's results folder (the command writes into the run)."""
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    shutil.copytree(results, tmp_path / "results")
    return tmp_path / "results" / run_dir.relative_to(results)


def test_a_run_scored_on_a_harder_second_site(saved_run, tmp_path: Path):
    run_dir = copied_run(saved_run, tmp_path)
    other = ["dataset=synthetic", *TINY_SYNTHETIC, "dataset.difficulty=0.9", "name=siteB"]
    result = run_cli([f"run={run_dir}", *other], module="benchmark.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run_dir / "external" / "siteB" / "metrics.json").read_text())
    assert scores["n_test"] == 45 and scores["synthetic_data"]  # every image of the other data, all splits
    assert scores["dataset_config"]["difficulty"] == 0.9
    assert scores["accuracy_ci_low"] <= scores["accuracy"] <= scores["accuracy_ci_high"]
    predictions = pd.read_csv(run_dir / "external" / "siteB" / "predictions.csv")
    assert len(predictions) == 45
    right = predictions["true_label"] == predictions["predicted_label"]
    assert np.isclose(scores["accuracy"], right.mean())

    report = run_cli([f"results_dir={tmp_path / 'results'}", "ensemble_k=0"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "## External validation" in markdown and "| siteB (synthetic) | 45 |" in markdown


def test_a_small_site_without_one_class_is_scored_on_every_image(saved_run, tmp_path: Path):
    """Three images per class are too few for a stratified split, which external scoring does not need;
    a class the site lacks is recorded, and its macro averages are undefined, not silently re-defined."""
    run_dir = copied_run(saved_run, tmp_path)
    for klass in ("normal", "tumor"):
        (tmp_path / "site" / klass).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((24, 24), 40 * i, np.uint8)).save(tmp_path / "site" / klass / f"{i}.png")
    result = run_cli([f"run={run_dir}", "dataset=folder", f"dataset.path={tmp_path / 'site'}", "name=small"],
                     module="benchmark.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run_dir / "external" / "small" / "metrics.json").read_text())
    assert scores["n_test"] == 6 and scores["absent_classes"] == ["pneumonia"]
    assert np.isnan(scores["macro_auroc"]) and 0 <= scores["accuracy"] <= 1
    for key in ("macro_f1", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1_ci_low"):
        assert np.isnan(scores[key]), key  # not a mean over two classes, nor one with a 0 for pneumonia
    assert 0 <= scores["weighted_f1"] <= 1  # weighted by support: the absent class weighs nothing
    assert "no images of class(es) pneumonia at small" in result.stderr


def test_classes_the_run_does_not_know_are_refused(saved_run, tmp_path: Path):
    run_dir = copied_run(saved_run, tmp_path)
    for klass in ("normal", "fracture"):
        (tmp_path / "site" / klass).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((24, 24), 20 * i, np.uint8)).save(tmp_path / "site" / klass / f"{i}.png")
    result = run_cli([f"run={run_dir}", "dataset=folder", f"dataset.path={tmp_path / 'site'}"],
                     module="benchmark.evaluate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: class(es) fracture of the other data")
    assert not (run_dir / "external").exists()


def test_a_site_that_repeats_the_runs_own_images_is_flagged(saved_run, tmp_path: Path):
    """Pointing evaluate at a folder holding training images would score the model on what it saw."""
    run_dir = copied_run(saved_run, tmp_path)
    own_data = saved_run[1]
    for klass in ("normal", "pneumonia", "tumor"):
        (tmp_path / "site" / klass).mkdir(parents=True)
        for image in sorted((own_data / klass).glob("*.png"))[:3]:
            shutil.copy(image, tmp_path / "site" / klass / f"copy_{image.name}")
    result = run_cli([f"run={run_dir}", "dataset=folder", f"dataset.path={tmp_path / 'site'}", "name=copies"],
                     module="benchmark.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run_dir / "external" / "copies" / "metrics.json").read_text())
    assert scores["images_in_run_data"] == 9
    assert "9 of the other data's 9 images are files of the run's own data" in result.stdout + result.stderr
    report = run_cli([f"results_dir={tmp_path / 'results'}", "ensemble_k=0"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "| copies ⚠️ 9 images from the run's own data |" in markdown
