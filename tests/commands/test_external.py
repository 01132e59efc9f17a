"""`python -m benchmark.evaluate`: a finished run scored on another site's data, and the report's table."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.data import synthetic
from benchmark.data.audit import hamming
from benchmark.data.images import DecodeOptions
from benchmark.data.scan import scan_files
from benchmark.evaluate import copies_across, dhash_distance
from benchmark.report.external import cases, repeated_images
from tests.conftest import TINY_SYNTHETIC, run_cli, write_dicom


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
    assert "## External validation" in markdown
    assert "| siteB (synthetic) | 45 (resampled by image) |" in markdown
    assert "scored one by one" not in result.stderr  # the run was split by image too


def test_a_site_scored_by_image_for_a_run_split_by_patient_is_warned_about(saved_run, tmp_path: Path):
    """QA: the site's intervals fell back to images silently (split_by: image), too narrow for slices."""
    run_dir = copied_run(saved_run, tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "split_by": "patient"}))
    other = ["dataset=synthetic", *TINY_SYNTHETIC, "dataset.seed=1", "name=siteB"]
    result = run_cli([f"run={run_dir}", *other], module="benchmark.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the run was split by patient, but this site's images are scored one by one" in result.stderr


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


def test_an_unknown_option_lists_the_data_options_too(tmp_path: Path):
    """QA: the list named run, name, batch_size and debug only, not the dataset.* keys evaluate takes."""
    result = run_cli([f"run={tmp_path}", "nme=siteB", "dataset=folder"], module="benchmark.evaluate")
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("error: nme is not an option of benchmark.evaluate: use run, name, batch_size, debug, and the "
            "other data's dataset=<name> and dataset.*") in result.stderr


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".."])
def test_a_site_name_that_is_a_path_is_refused_before_any_work(tmp_path: Path, name: str):
    """QA: name=../../evil wrote <run>/../../evil/, beside the backbones' run folders."""
    result = run_cli([f"run={tmp_path}", f"name={name}", "dataset=folder"], module="benchmark.evaluate")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: name={name} must be a plain folder name (no / or ..): e.g. name=siteB")


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
    assert scores["run_data_copies"]["by_kind"] == {"file": 9, "exact": 0, "sop_instance_uid": 0, "near": 0}
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


def test_the_images_column_says_what_a_sites_intervals_resample():
    """QA: an ungrouped site's image-level interval sat beside a grouped internal one, unmarked."""
    assert cases({"n_test": 72, "n_test_groups": 18, "split_by": "patient"}) == "72 (18 patients)"
    assert cases({"n_test": 72, "n_test_groups": None, "split_by": "image"}) == "72 (resampled by image)"


def test_an_external_score_written_before_the_split_counts_keeps_its_warning():
    assert repeated_images({"images_in_run_data": 3}) == " ⚠️ 3 images from the run's own data"
    assert repeated_images({"images_in_run_data": 1}) == " ⚠️ 1 image from the run's own data"  # QA: 1 images
    assert repeated_images({"images_in_run_data": 0, "run_data_copies": None}) == ""
    assert repeated_images({"images_in_run_data": None}) == ""


def test_only_pairs_across_the_run_and_the_site_are_compared(tmp_path: Path, monkeypatch):
    """Real decoded images: a site image re-encoded from a training image is found near every run copy of
    it, a re-saved PNG as the same pixels, a cropped re-export of a test DICOM by its SOPInstanceUID (its
    hash is too far for "near"); the run's own JPEG copy of a training image is neither reported nor
    compared (N x M hash comparisons, not the run's all-pairs audit again), an unseen slice not flagged."""
    slices = sorted(synthetic.generate(tmp_path / "data", 2, 64, 0, 0.5).glob("*/*.png"))
    a, b, c = (Image.open(path).convert("L") for path in slices[:3])
    run, site = tmp_path / "run", tmp_path / "site"
    for folder in (run / "train", run / "test", site):
        folder.mkdir(parents=True)
    a.save(run / "train" / "a.png")
    a.save(run / "train" / "a_again.jpg", quality=90)  # a duplicate within the run: its audit's business
    b.save(run / "train" / "b.png")
    uid = "1.2.826.0.1.3680043.9.7134.1"
    ct = np.asarray(c, dtype=np.uint16) * 16
    write_dicom(run / "test" / "c.dcm", ct, sop_instance_uid=uid)
    a.resize((56, 56)).save(site / "a_resized.jpg", quality=85)
    b.save(site / "b_recompressed.png", compress_level=9)
    write_dicom(site / "c_cropped.dcm", ct[20:, 20:], sop_instance_uid=uid)  # the instance, re-exported
    unseen = next(synthetic.generate(tmp_path / "unseen", 1, 64, 7, 0.5).glob("tumor/*.png"))
    shutil.copy(unseen, site / "unseen.png")
    run_ids = ["train/a.png", "train/a_again.jpg", "train/b.png", "test/c.dcm"]
    site_ids = sorted(path.name for path in site.iterdir())
    own_records = scan_files(run, run_ids, {}, DecodeOptions(), None)
    site_records = scan_files(site, site_ids, {}, DecodeOptions(), None)
    own = pd.DataFrame({"file": run_ids, "split": ["train", "train", "train", "test"]})
    near_bits = 28
    assert dhash_distance(own_records["train/a.png"], own_records["train/a_again.jpg"]) <= near_bits
    compared = []

    def counted(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        compared.append(len(rows) * len(columns))
        return hamming(rows, columns)

    monkeypatch.setattr(sys.modules["benchmark.data.audit"], "hamming", counted)  # benchmark.data.audit is
    # also a function's name: the module is taken from sys.modules
    pairs = copies_across(own, own_records, site_ids, site_records, near_bits)
    found = {(row.split, row.run_file, row.file, row.kind) for row in pairs.itertuples()}
    assert found == {
        ("train", "train/a.png", "a_resized.jpg", "near"),
        ("train", "train/a_again.jpg", "a_resized.jpg", "near"),
        ("train", "train/b.png", "b_recompressed.png", "exact"),
        ("test", "test/c.dcm", "c_cropped.dcm", "sop_instance_uid"),
    }
    (uid_distance,) = pairs.loc[pairs["kind"] == "sop_instance_uid", "distance"]
    assert uid_distance > near_bits  # only the UID tells this copy: the old joint audit threw it away
    assert sum(compared) == len(run_ids) * len(site_ids)  # 4 x 4 hash pairs, none within the run
