"""`python -m benchmark.evaluate`: a finished run scored on another site's data, and the report's table."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.data import synthetic
from benchmark.report.external import repeated_images
from tests.conftest import TINY_SYNTHETIC, run_cli


def copied_run(saved_run, tmp_path: Path) -> Path:
    """A private copy of the shared run's results folder (the command writes into the run)."""
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    shutil.copytree(results, tmp_path / "results")
    return tmp_path / "results" / run_dir.relative_to(results)


def test_a_run_scored_on_a_harder_second_site(saved_run, tmp_path: Path):
    run_dir = copied_run(saved_run, tmp_path)
    # Another seed: the same seed at another difficulty renders the run's own phantoms, which the overlap
    # check rightly flags as re-encoded copies of the run's images.
    other = ["dataset=synthetic", *TINY_SYNTHETIC, "dataset.difficulty=0.9", "dataset.seed=1", "name=siteB"]
    result = run_cli([f"run={run_dir}", *other], module="benchmark.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run_dir / "external" / "siteB" / "metrics.json").read_text())
    assert scores["n_test"] == 45 and scores["synthetic_data"]  # every image of the other data, all splits
    assert scores["dataset_config"]["difficulty"] == 0.9 and scores["images_in_run_data"] == 0
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
    assert scores["run_data_copies"]["by_kind"] == {"file": 9, "exact": 0, "near": 0}
    assert "9 of the other data's 9 images are the run's own images (train " in result.stdout + result.stderr
    report = run_cli([f"results_dir={tmp_path / 'results'}", "ensemble_k=0"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    where = ", ".join(f"{split} {n}" for split, n in scores["run_data_copies"]["by_split"].items())
    assert f"| copies ⚠️ 9 images from the run's own data ({where}) |" in markdown


def test_a_site_that_repeats_the_runs_images_re_encoded_is_flagged(saved_run, tmp_path: Path):
    """Byte comparison misses a training image re-exported by another PACS: a PNG saved as a slightly
    smaller JPEG, a test image saved as 16-bit. The data audit's perceptual hash catches both; a slice the
    run never saw (another synthetic seed) is not flagged."""
    run_dir = copied_run(saved_run, tmp_path)
    own = pd.read_csv(run_dir / "splits.csv")
    train, test = (own[own["split"] == split].iloc[0] for split in ("train", "test"))
    site = tmp_path / "site"
    for klass in {train["label"], test["label"], "tumor"}:
        (site / klass).mkdir(parents=True)
    training_image = Image.open(saved_run[1] / train["file"]).convert("RGB")
    training_image.resize((44, 44)).save(site / train["label"] / "reexported.jpg", quality=85)
    test_image = np.asarray(Image.open(saved_run[1] / test["file"]).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(test_image).save(site / test["label"] / "sixteen_bit.png")
    unseen = next(synthetic.generate(tmp_path / "unseen", 1, 48, 7, 0.5).glob("tumor/*.png"))
    shutil.copy(unseen, site / "tumor" / "unseen.png")
    result = run_cli([f"run={run_dir}", "dataset=folder", f"dataset.path={site}", "name=reexports"],
                     module="benchmark.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run_dir / "external" / "reexports" / "metrics.json").read_text())
    assert scores["images_in_run_data"] == 2  # the JPEG and the 16-bit copy, not the unseen slice
    copies = scores["run_data_copies"]
    assert copies["by_split"] == {"train": 1, "test": 1}
    (example,) = copies["examples"]["train"]
    assert example["file"] == f"{train['label']}/reexported.jpg" and example["run_file"] == train["file"]
    assert example["kind"] == "near" and 0 < example["distance"] <= copies["near_duplicate_bits"]
    assert copies["examples"]["test"][0]["run_file"] == test["file"]
    assert "2 of the other data's 3 images are the run's own images (train 1, test 1;" in result.stderr
    report = run_cli([f"results_dir={tmp_path / 'results'}", "ensemble_k=0"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "| reexports ⚠️ 2 images from the run's own data (train 1, test 1) |" in markdown


def test_an_external_score_written_before_the_split_counts_keeps_its_warning():
    assert repeated_images({"images_in_run_data": 3}) == " ⚠️ 3 images from the run's own data"
    assert repeated_images({"images_in_run_data": 0, "run_data_copies": None}) == ""
    assert repeated_images({"images_in_run_data": None}) == ""
