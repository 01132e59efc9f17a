"""Folder layouts and the MedMNIST npz, on real files written by the tests."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from benchmark.data import check_path, load_dataset
from benchmark.errors import BenchmarkError

FOLDER = {"loader": "folder", "name": None, "split": [0.7, 0.1, 0.2], "val_fraction": 0.2, "split_seed": 0}


def write_images(directory: Path, n: int, value: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):  # textured, so the perceptual-hash audit sees different images
        pixels = np.random.default_rng([value, i]).integers(0, 256, (12, 12), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"img{i:03d}.png")


def folder_cfg(path: Path, **changes):
    return OmegaConf.create({**FOLDER, "path": str(path), **changes})


def test_train_test_layout_with_val_split_from_train(tmp_path: Path):
    for klass, value in (("normal", 0), ("covid", 80), ("pneumonia", 160)):
        write_images(tmp_path / "train" / klass, 20, value)
        write_images(tmp_path / "test" / klass, 5, value + 7)
    dataset = load_dataset(folder_cfg(tmp_path), tmp_path / "unused")
    assert dataset.class_names == ("covid", "normal", "pneumonia")  # folder names, sorted
    assert len(dataset.splits["test"]) == 15
    assert len(dataset.splits["val"]) == 12 and len(dataset.splits["train"]) == 48  # 20% of train, stratified
    assert all(i.startswith("test/") for i in dataset.splits["test"].ids)
    assert not set(dataset.splits["val"].ids) & set(dataset.splits["train"].ids)
    assert dataset.class_counts()["val"] == {"covid": 4, "normal": 4, "pneumonia": 4}
    assert dataset.name == tmp_path.name


def test_explicit_val_folder_is_used(tmp_path: Path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for klass in ("a", "b"):
            write_images(tmp_path / split / klass, n, 50 if klass == "a" else 150)
    dataset = load_dataset(folder_cfg(tmp_path), tmp_path)
    assert [len(dataset.splits[s]) for s in ("train", "val", "test")] == [12, 4, 6]


def test_class_folders_get_a_stratified_three_way_split(tmp_path: Path):
    for klass, value in (("normal", 10), ("tumor", 200)):
        write_images(tmp_path / klass, 30, value)
    dataset = load_dataset(folder_cfg(tmp_path), tmp_path)
    counts = dataset.class_counts()
    assert counts["test"] == {"normal": 6, "tumor": 6} and counts["val"] == {"normal": 3, "tumor": 3}
    ids = [set(dataset.splits[s].ids) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = load_dataset(folder_cfg(tmp_path), tmp_path)
    assert again.splits["test"].ids == dataset.splits["test"].ids and again.fingerprint == dataset.fingerprint


def test_the_same_mapping_in_every_split(tmp_path: Path):
    for klass in ("b", "a", "c"):
        write_images(tmp_path / "train" / klass, 10, ord(klass))
        write_images(tmp_path / "test" / klass, 2, ord(klass))
    dataset = load_dataset(folder_cfg(tmp_path), tmp_path)
    for split in dataset.splits.values():
        for image_id, label in zip(split.ids, split.labels, strict=True):
            assert image_id.split("/")[1] == dataset.class_names[label]


def test_leakage_audit_finds_a_copied_image(tmp_path: Path):
    for klass in ("a", "b"):
        write_images(tmp_path / "train" / klass, 10, 0 if klass == "a" else 100)
        write_images(tmp_path / "test" / klass, 3, 50 if klass == "a" else 150)
    (tmp_path / "test" / "a" / "copy.png").write_bytes((tmp_path / "train" / "a" / "img000.png").read_bytes())
    dataset = load_dataset(folder_cfg(tmp_path), tmp_path)
    (pair,) = dataset.records["audit"]["counts"]["exact"].items()  # img000 went to train or to val
    assert pair in (("train~test", 1), ("val~test", 1))


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "is not a folder"),
        ("one_class", "at least 2"),
        ("empty_class", "has no images"),
        ("extra_test_class", "train/ lacks"),
    ],
)
def test_bad_folders_fail_with_a_clear_message(tmp_path: Path, layout, message):
    if layout == "one_class":
        write_images(tmp_path / "only", 5, 0)
    elif layout == "empty_class":
        write_images(tmp_path / "a", 5, 0)
        (tmp_path / "b").mkdir()
    elif layout == "extra_test_class":
        write_images(tmp_path / "train" / "a", 5, 0)
        write_images(tmp_path / "train" / "b", 5, 9)
        write_images(tmp_path / "test" / "z", 2, 0)
    elif layout in ("one_train_class", "empty_val"):
        write_images(tmp_path / "train" / "a", 5, 0)
        write_images(tmp_path / "test" / "a", 2, 0)
        if layout == "empty_val":
            write_images(tmp_path / "train" / "b", 5, 9)
            write_images(tmp_path / "test" / "b", 2, 9)
            (tmp_path / "val").mkdir()
    root = tmp_path / "nowhere" if layout == "missing" else tmp_path
    with pytest.raises(BenchmarkError, match=message):
        load_dataset(folder_cfg(root), tmp_path)


def test_a_missing_path_is_named_by_the_early_check_as_by_the_loaders(tmp_path: Path):
    write_images(tmp_path / "a", 2, 0)
    check_path(folder_cfg(tmp_path))  # there: nothing to say
    check_path(OmegaConf.create({"loader": "synthetic"}))  # no path of the user's
    with pytest.raises(BenchmarkError, match="is not a folder"):
        check_path(folder_cfg(tmp_path / "nowhere"))
    with pytest.raises(BenchmarkError, match="is not a file: point it at a MedMNIST .npz"):
        check_path(OmegaConf.create({"loader": "medmnist", "path": str(tmp_path / "organ.npz")}))


def write_npz(path: Path, n_classes: int = 3, channels: int | None = None) -> None:
    rng = np.random.default_rng(0)
    shape = (28, 28) if channels is None else (28, 28, channels)
    arrays = {}
    for split, n in (("train", 30), ("val", 9), ("test", 12)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)


def test_medmnist_npz_keeps_the_official_splits(tmp_path: Path):
    write_npz(tmp_path / "pneumoniamnist.npz")
    cfg = OmegaConf.create(
        {
            "loader": "medmnist",
            "name": None,
            "path": str(tmp_path / "pneumoniamnist.npz"),
            "class_names": ["normal", "pneumonia", "other"],
        }
    )
    dataset = load_dataset(cfg, tmp_path)
    assert dataset.name == "pneumoniamnist" and dataset.class_names == ("normal", "pneumonia", "other")
    assert [len(dataset.splits[s]) for s in ("train", "val", "test")] == [30, 9, 12]
    assert dataset.decode("test/3", 32).shape == (32, 32, 3)
    assert dataset.splits["test"].labels[4] == 1
    assert set(dataset.scans) == {i for split in dataset.splits.values() for i in split.ids}


def test_medmnist_rgb_and_default_class_names(tmp_path: Path):
    write_npz(tmp_path / "x.npz", n_classes=2, channels=3)
    cfg = OmegaConf.create(
        {"loader": "medmnist", "name": "mine", "path": str(tmp_path / "x.npz"), "class_names": None}
    )
    dataset = load_dataset(cfg, tmp_path)
    assert dataset.class_names == ("class_0", "class_1") and dataset.name == "mine"
    assert dataset.decode("train/0", 16).shape == (16, 16, 3)


def test_medmnist_wrong_keys_and_multilabel_are_refused(tmp_path: Path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4)))
    cfg = OmegaConf.create(
        {"loader": "medmnist", "name": None, "path": str(tmp_path / "bad.npz"), "class_names": None}
    )
    with pytest.raises(BenchmarkError, match="lacks the keys"):
        load_dataset(cfg, tmp_path)
    multi = {
        f"{s}_{k}": np.zeros((4, 4, 4) if k == "images" else (4, 14), np.uint8)
        for s in ("train", "val", "test")
        for k in ("images", "labels")
    }
    np.savez(tmp_path / "chest.npz", **multi)
    with pytest.raises(BenchmarkError, match="multi-label"):
        load_dataset(OmegaConf.merge(cfg, {"path": str(tmp_path / "chest.npz")}), tmp_path)


def test_a_class_of_three_images_is_in_every_split_and_the_sizes_stay():
    """sklearn rounds a class's val share: 3 images with 1/8 of the rest going to val gave val none of them
    (early stopping and the thresholds never saw the class). One image crosses, the largest class gives one
    back, and data whose classes sklearn already spread keeps exactly sklearn's split."""
    from sklearn.model_selection import train_test_split

    from benchmark.data.splits import stratified_three_way

    names = ["covid", "normal", "rare", "tumor"]
    labels = np.array([0] * 36 + [1] * 36 + [2] * 3 + [3] * 36)
    for seed in range(5):
        split = stratified_three_way(labels, [0.7, 0.1, 0.2], seed, names)
        counts = {side: np.bincount(labels[rows], minlength=4) for side, rows in split.items()}
        assert all(counts[side][2] == 1 for side in ("train", "val", "test")), counts
        assert [len(split[s]) for s in ("train", "val", "test")] == [78, 11, 22]
        assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(len(labels)))
    balanced = np.repeat([0, 1, 2], 200)
    rest, test = train_test_split(np.arange(600), test_size=120, stratify=balanced, random_state=0)
    assert stratified_three_way(balanced, [0.7, 0.1, 0.2], 0, names[:3])["test"].tolist() == sorted(test)


def test_a_class_of_two_images_cannot_be_split_three_ways_and_says_so():
    """Review: it went to train alone (no val, no test: every metric of it undefined), and once every class
    got both sides of the test split, val's split refused it as "only 1 image left"."""
    from benchmark.data.splits import stratified_three_way

    labels = np.array([0] * 40 + [1] * 40 + [2] * 2)
    with pytest.raises(BenchmarkError, match="class 'c' has only 2 images, and it needs at least 3 of each"):
        stratified_three_way(labels, [0.7, 0.1, 0.2], 0, ["a", "b", "c"])


def test_split_folders_only_scored_put_every_image_in_test(tmp_path: Path, caplog):
    """Another site's train/ val/ test/ folders, scored by benchmark.evaluate (dataset.split=[0,0,1]): its
    own split plays no part, so no within-site leakage, no class-missing-from-val refusal, and its classes
    are every split's (review: a class only its test/ had was refused)."""
    caplog.set_level("INFO")
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for klass in ("a", "b"):
            if not (split == "val" and klass == "b"):  # a class the site's val/ lacks
                write_images(tmp_path / split / klass, n, 50 if klass == "a" else 150)
    write_images(tmp_path / "dup", 1, 50)  # the same image in the site's train/ and test/
    (tmp_path / "dup" / "img000.png").rename(tmp_path / "test" / "a" / "copy.png")
    (tmp_path / "dup").rmdir()
    with pytest.raises(BenchmarkError, match="val/ has no images of class 'b'"):
        load_dataset(folder_cfg(tmp_path), tmp_path)
    write_images(tmp_path / "test" / "c", 2, 250)
    dataset = load_dataset(folder_cfg(tmp_path, split=[0, 0, 1]), tmp_path)
    assert dataset.class_names == ("a", "b", "c")
    assert [len(dataset.splits[s]) for s in ("train", "val", "test")] == [0, 0, 6 + 6 + 2 + 3 + 3 + 1 + 2]
    assert dataset.records["split_from"] == "folders"
    assert "every image scored" in caplog.text and "LEAKAGE" not in caplog.text


def test_where_the_split_comes_from_is_recorded(tmp_path: Path, caplog):
    caplog.set_level("INFO")
    for klass in ("a", "b"):
        write_images(tmp_path / "flat" / klass, 10, ord(klass))
        write_images(tmp_path / "split" / "train" / klass, 6, ord(klass))
        write_images(tmp_path / "split" / "test" / klass, 2, ord(klass) + 1)
    assert load_dataset(folder_cfg(tmp_path / "flat"), tmp_path).records["split_from"] == "dataset.split"
    assert load_dataset(folder_cfg(tmp_path / "split"), tmp_path).records["split_from"] == "folders"
    assert "train/ and test/ (no val/) folders found, using them as the split" in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_labels": np.zeros((25, 1), np.uint8)}, "test_images holds 30 images but test_labels 25"),
        ({"test_images": np.zeros((25, 8, 8), np.uint8)}, "test_images holds 25 images but test_labels 30"),
        ({"val_images": np.zeros((0, 8, 8), np.uint8), "val_labels": np.zeros((0, 1), np.uint8)},
         "the val split is empty"),
        ({"train_images": np.zeros((30, 8, 8, 8), np.uint8)}, r"shape \(30, 8, 8, 8\), not \(images, height"),
    ],
)
def test_a_malformed_medmnist_file_is_one_line(tmp_path: Path, change, message):
    """QA: more images than labels trained on a silently truncated test split; fewer, an empty split or 3-D
    volumes gave tracebacks."""
    splits = ("train", "val", "test")
    arrays = {f"{s}_images": np.zeros((30, 8, 8), np.uint8) for s in splits}
    arrays |= {f"{s}_labels": (np.arange(30) % 2).reshape(-1, 1).astype(np.uint8) for s in splits}
    np.savez(tmp_path / "m.npz", **(arrays | change))
    cfg = OmegaConf.create({"loader": "medmnist", "name": None, "path": str(tmp_path / "m.npz"),
                            "class_names": None})
    with pytest.raises(BenchmarkError, match=message):
        load_dataset(cfg, tmp_path)


def test_a_file_numpy_would_unpickle_is_not_read_and_not_advised_to_be(tmp_path: Path):
    (tmp_path / "notes.npz").write_text("not an archive\n")
    cfg = OmegaConf.create({"loader": "medmnist", "name": None, "path": str(tmp_path / "notes.npz"),
                            "class_names": None})
    with pytest.raises(BenchmarkError, match=r"\(not an archive of arrays\): the file is truncated") as error:
        load_dataset(cfg, tmp_path)
    assert "pickle" not in str(error.value)


@pytest.mark.parametrize("presplit", [False, True])
def test_a_site_of_one_class_is_scored_and_one_class_is_not_trained_on(tmp_path: Path, presplit: bool):
    """Another site may hold only normal scans: scoring it measures that class (the macro metrics are
    undefined there); training on one class stays refused."""
    for folder in (("train", "test") if presplit else ("",)):
        write_images(tmp_path / folder / "normal", 6, 40)
    dataset = load_dataset(folder_cfg(tmp_path, split=[0, 0, 1]), tmp_path)
    assert dataset.class_names == ("normal",) and len(dataset.splits["test"]) == (12 if presplit else 6)
    with pytest.raises(BenchmarkError, match="has 1 class folder"):
        load_dataset(folder_cfg(tmp_path), tmp_path)
