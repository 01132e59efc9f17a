"""Patient-/study-/site-grouped splits: group keys, group-aware splits, leakage checks, splits.csv."""

import logging
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.model_selection import StratifiedGroupKFold

from benchmark.data.dataset import Split
from benchmark.data.folder import load_folder
from benchmark.data.groups import assign_groups, group_key, splits_frame
from benchmark.data.splits import group_split_off, grouped_three_way, missing_classes, stratified_three_way
from benchmark.errors import BenchmarkError

BASE = {"split": [0.7, 0.1, 0.2], "val_fraction": 0.2, "split_seed": 0, "group_overlap": "error"}
PATTERN = r"_(p\d+)_"


def cfg(**changes):
    return OmegaConf.create({**BASE, "groups": None, "group_pattern": None, "group_depth": None, **changes})


def touch(path: Path) -> None:
    """The loader lists files by suffix only: empty files keep these tests fast."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def flat_patients(root: Path, patients: dict[str, int], slices: int, prefix: str = "") -> None:
    """<prefix><class>/<class>_p<NNNN>_s<SS>.png, patient numbers running on across classes."""
    number = 0
    for klass, count in patients.items():
        for _ in range(count):
            for s in range(slices):
                touch(root / prefix / klass / f"{klass}_p{number:04d}_s{s:02d}.png")
            number += 1


def group_sets(splits: dict[str, Split]) -> dict[str, set[str]]:
    return {name: set(split.groups) for name, split in splits.items()}


def assert_no_shared_group(splits: dict[str, Split]) -> None:
    sets = group_sets(splits)
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not sets[a] & sets[b], (a, b, sets[a] & sets[b])


def test_pattern_groups_never_cross_splits_and_stay_stratified(tmp_path: Path):
    flat_patients(tmp_path, {"normal": 20, "tumor": 20}, slices=4)
    class_names, splits = load_folder(tmp_path, cfg(group_pattern=PATTERN))
    assert class_names == ["normal", "tumor"]
    assert_no_shared_group(splits)
    assert sum(len(s) for s in splits.values()) == 160
    for split in splits.values():
        assert split.groups is not None and len(split.groups) == len(split)
        assert all(f"_{g}_" in i for i, g in zip(split.ids, split.groups, strict=True))
        assert set(split.labels.tolist()) == {0, 1}  # both classes in every split
    assert 0.15 <= len(splits["test"]) / 160 <= 0.25  # round(1 / 0.2) = 5 folds: about a fifth
    again = load_folder(tmp_path, cfg(group_pattern=PATTERN))[1]
    assert all(again[s].ids == splits[s].ids for s in splits)
    other = load_folder(tmp_path, cfg(group_pattern=PATTERN, split_seed=1))[1]
    assert other["test"].ids != splits["test"].ids


def test_without_a_group_key_the_split_is_the_per_image_one(tmp_path: Path):
    flat_patients(tmp_path, {"a": 6, "b": 7}, slices=3)
    _, splits = load_folder(tmp_path, cfg())
    ids = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
    labels = np.array([0 if i.startswith("a/") else 1 for i in ids])
    expected = stratified_three_way(labels, BASE["split"], 0, ["a", "b"])
    for name, rows in expected.items():
        assert splits[name].ids == tuple(ids[r] for r in rows)
        assert splits[name].groups is None


def test_group_depth_uses_the_folder_under_the_class_folder(tmp_path: Path):
    for klass in ("a", "b"):
        for patient in range(10):
            for s in range(3):
                touch(tmp_path / klass / f"pat{klass}{patient}" / f"slice{s}.png")
    _, splits = load_folder(tmp_path, cfg(group_depth=1))
    assert_no_shared_group(splits)
    assert all(i.split("/")[1] == g for s in splits.values() for i, g in zip(s.ids, s.groups, strict=True))


def test_patient_folders_numbered_per_class_are_told_to_be_one_patient(tmp_path: Path, caplog):
    """QA: normal/P001 and covid/P001, different people in an export that numbers patients per class, were
    merged into one patient silently (27 patients counted as 25)."""
    for klass in ("covid", "normal"):
        for patient in range(20):
            for s in range(2):
                touch(tmp_path / klass / f"P{patient:03d}" / f"slice{s}.png")
    with caplog.at_level(logging.WARNING, logger="benchmark.data.groups"):
        load_folder(tmp_path, cfg(group_depth=1, group_name="patient"))
    (said,) = [r.getMessage() for r in caplog.records if "several classes" in r.getMessage()]
    assert said.startswith("20 of 20 patients hold images of several classes, e.g. 'P000' (covid, normal)")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="benchmark.data.groups"):
        load_folder(tmp_path, cfg(group_pattern=r"^([^/]+/P\d+)/"))  # the class captured too: 40 patients
    assert not [r for r in caplog.records if "several classes" in r.getMessage()]


def test_group_depth_in_the_presplit_layout_and_val_split_off_by_group(tmp_path: Path):
    for split, patients in (("train", range(0, 12)), ("test", range(12, 16))):
        for klass in ("a", "b"):
            for patient in patients:
                for s in range(2):
                    touch(tmp_path / split / klass / f"{klass}{patient}" / f"{s}.png")
    _, splits = load_folder(tmp_path, cfg(group_depth=1))
    assert set(splits) == {"train", "val", "test"}
    assert_no_shared_group(splits)
    assert len(group_sets(splits)["val"]) in (4, 5)  # one of round(1 / 0.2) = 5 folds of 24 train groups
    assert all(i.startswith("train/") for i in splits["val"].ids)


def test_groups_from_a_csv(tmp_path: Path):
    flat_patients(tmp_path / "data", {"a": 8, "b": 8}, slices=2)
    ids = sorted(str(p.relative_to(tmp_path / "data")) for p in (tmp_path / "data").rglob("*.png"))
    rows = ["file,group"] + [f"./{i},site{n % 5}" for n, i in enumerate(ids)]
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n")
    settings = cfg(groups=str(tmp_path / "groups.csv"), split=[0.6, 0.2, 0.2])
    _, splits = load_folder(tmp_path / "data", settings)
    assert_no_shared_group(splits)
    assert set().union(*group_sets(splits).values()) == {f"site{k}" for k in range(5)}


def test_splits_frame_lists_every_image_once(tmp_path: Path):
    flat_patients(tmp_path, {"a": 10, "b": 10}, slices=2)
    _, splits = load_folder(tmp_path, cfg(group_pattern=PATTERN))
    frame = splits_frame(splits, ["a", "b"])
    assert list(frame.columns) == ["file", "split", "label", "group"]
    assert len(frame) == 40 and frame["file"].is_unique
    assert list(dict.fromkeys(frame["split"])) == ["train", "val", "test"]
    assert (frame["label"] == frame["file"].str[0]).all()
    assert frame.groupby("group")["split"].nunique().max() == 1
    plain = splits_frame({"test": Split(("x.png",), np.array([1]))}, ["a", "b"])
    assert plain.to_dict("records") == [{"file": "x.png", "split": "test", "label": "b", "group": ""}]


def test_usable_sees_every_id_once_before_the_split(tmp_path: Path):
    for split in ("train", "test"):
        flat_patients(tmp_path, {"a": 6, "b": 6}, slices=2, prefix=split)
    seen = []

    def usable(ids: list[str]) -> list[str]:
        seen.append(list(ids))
        return [i for i in ids if not i.endswith("_s01.png")]

    _, splits = load_folder(tmp_path, cfg(group_pattern=PATTERN, group_overlap="warn"), usable)
    assert len(seen) == 1 and len(seen[0]) == 48
    assert seen[0] == sorted(seen[0], key=lambda i: (i.split("/")[0] != "train", i))  # train/ then test/
    kept = [i for s in splits.values() for i in s.ids]
    assert len(kept) == 24 and not any(i.endswith("_s01.png") for i in kept)


def test_a_patient_in_two_split_folders_is_an_error_or_a_warning(tmp_path: Path, caplog):
    for split in ("train", "val", "test"):
        flat_patients(tmp_path, {"a": 3, "b": 3}, slices=1, prefix=split)  # the same p0000..p0005 everywhere
    with pytest.raises(BenchmarkError, match=r"'p0000' in train\+val\+test \(train/a/a_p0000_s00.png"):
        load_folder(tmp_path, cfg(group_pattern=PATTERN))
    with caplog.at_level(logging.WARNING):
        _, splits = load_folder(tmp_path, cfg(group_pattern=PATTERN, group_overlap="warn"))
    assert "6 group(s) appear in more than one split folder" in caplog.text
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 6, 6]
    from benchmark.data.dataset import Dataset
    from benchmark.report.document import split_unit
    from benchmark.runs.pipeline import split_summary

    kept = Dataset("d", ("a", "b"), splits, "f", False, lambda i, s: None, {}, group_name="patient")
    summary = split_summary(kept)  # what metrics.json records, and the leaderboard says
    from benchmark.data.dataset import DATA_FACTS

    assert tuple(summary) == DATA_FACTS  # what an ensemble of such runs inherits
    assert summary["n_groups"] == 6 and summary["groups_in_several_splits"] == 6
    said = split_unit(summary)
    assert said.startswith("split by patient (6 patients: train 6, val 6, test 6)")
    assert "6 patient(s) in more than one split** (dataset.group_overlap=warn)" in said


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"group_pattern": PATTERN, "group_depth": 1}, "dataset.group_pattern, dataset.group_depth"),
        ({"group_pattern": r"_p\d+_"}, r"group_pattern='_p\\d\+_' has 0 capture groups"),  # as typed
        ({"group_pattern": r"(p)(\d+)"}, "has 2 capture groups"),
        ({"group_pattern": r"(p"}, "not a valid regular expression"),
        ({"group_pattern": r"_(p000\d)_"}, r"does not match 4 of 24 images, e\.g\. b/b_p0010_s00\.png"),
        ({"group_depth": 1}, r"group_depth=1 needs 1 folder.*24 of 24 images lie shallower, e\.g\. a/a_p0"),
        ({"group_depth": 0}, "must be a positive integer"),
        ({"groups": "nowhere.csv"}, "is not a file"),
    ],
)
def test_bad_group_settings_fail_with_a_clear_message(tmp_path: Path, changes: dict, message: str):
    flat_patients(tmp_path, {"a": 10, "b": 2}, slices=2)
    with pytest.raises(BenchmarkError, match=message):
        load_folder(tmp_path, cfg(**changes))


def test_a_csv_of_absolute_paths_under_the_data_folder_is_read(tmp_path: Path):
    """QA: full paths, as a PACS export's manifest gives them, were refused as "no group for 31 of 31"."""
    flat_patients(tmp_path / "data", {"a": 10, "b": 10}, slices=2)
    files = sorted(tmp_path.glob("data/*/*.png"))
    rows = ["file,group", *(f"{f},{f.name.split('_')[1]}" for f in files)]
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n")
    settings = cfg(groups=str(tmp_path / "groups.csv"), split=[0.6, 0.2, 0.2])
    _, splits = load_folder(tmp_path / "data", settings)
    assert_no_shared_group(splits)
    assert sum(len(s) for s in splits.values()) == 40


def test_a_csv_without_some_files_names_them(tmp_path: Path):
    flat_patients(tmp_path, {"a": 5, "b": 5}, slices=1)
    (tmp_path / "g.csv").write_text("file,group\na/a_p0000_s00.png,x\n")
    missing = r"no group for 9 of 10 images, e\.g\. a/a_p0001_s00\.png.*\(\+6 more\)"
    with pytest.raises(BenchmarkError, match=missing):
        load_folder(tmp_path, cfg(groups="g.csv"))  # a relative CSV path is also looked for under the root
    (tmp_path / "bad.csv").write_text("path,patient\n")
    with pytest.raises(BenchmarkError, match=r"needs the columns `file,group`"):
        load_folder(tmp_path, cfg(groups=str(tmp_path / "bad.csv")))


def test_too_few_groups_names_the_counts():
    labels = np.array([0, 0, 1, 1, 0, 1])
    with pytest.raises(BenchmarkError, match=r"at least 5 groups.*only 3 group\(s\)"):
        grouped_three_way(labels, ["x", "x", "y", "y", "z", "z"], [0.7, 0.1, 0.2], 0, ["a", "b"])


def test_group_split_off_keeps_groups_whole_and_is_seeded():
    rng = np.random.default_rng(0)
    groups = [f"g{k}" for k in range(40) for _ in range(int(rng.integers(1, 6)))]
    labels = np.array([int(g[1:]) % 3 for g in groups])
    kept, taken = group_split_off(labels, groups, 0.25, 7, "test", ["a", "b", "c"])
    assert sorted(np.concatenate([kept, taken]).tolist()) == list(range(len(groups)))
    assert not {groups[i] for i in kept} & {groups[i] for i in taken}
    assert set(labels[taken].tolist()) == {0, 1, 2}
    again = group_split_off(labels, groups, 0.25, 7, "test", ["a", "b", "c"])
    assert np.array_equal(again[1], taken)


def test_group_key_and_assign_groups_without_a_key(tmp_path: Path):
    assert group_key(cfg()) is None
    assert group_key(OmegaConf.create({"split_seed": 0})) is None  # an old config without the keys
    assert assign_groups(["a/x.png"], OmegaConf.create({}), tmp_path) is None
    assert assign_groups(["a/p1/x.png"], cfg(group_depth=1), tmp_path) == ("p1",)
    assert assign_groups(["a/s/p1/x.png"], cfg(group_depth=2), tmp_path) == ("s/p1",)


def test_csv_rows_naming_files_not_there_are_ignored_with_one_warning(tmp_path: Path, caplog):
    flat_patients(tmp_path, {"a": 5, "b": 5}, slices=2)
    ids = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
    ghosts = [f"a/ghost{k}.png" for k in range(5)]  # a PACS-wide CSV lists more files than were copied
    rows = [f"{i},{i.split('_')[1]}" for i in ids] + [f"{g},p9999" for g in ghosts]
    (tmp_path / "g.csv").write_text("file,group\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        _, splits = load_folder(tmp_path, cfg(groups="g.csv", split=[0.4, 0.3, 0.3]))
    assert sum(len(s) for s in splits.values()) == 20
    warned = [r.getMessage() for r in caplog.records if "g.csv" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "5 of the 25 file(s) it lists are not under" in warned[0]
    assert "e.g. a/ghost0.png, a/ghost1.png, a/ghost2.png (+2 more)" in warned[0]


@pytest.mark.parametrize("presplit", [False, True])
def test_a_class_with_one_image_is_named_with_its_count_and_the_fix(tmp_path: Path, presplit: bool):
    prefixes = ("train", "test") if presplit else ("",)
    for prefix in prefixes:
        flat_patients(tmp_path, {"normal": 10, "pneumonia": 10, "tumor": 1}, slices=1, prefix=prefix)
    with pytest.raises(BenchmarkError) as error:
        load_folder(tmp_path, cfg())
    message = str(error.value)
    assert "class 'tumor' has only 1 image" in message and "train/ val/ test/" in message, message
    assert "too few members" not in message and "[2]" not in message and "\n" not in message


def test_group_split_warnings_name_the_class(tmp_path: Path, caplog):
    flat_patients(tmp_path, {"normal": 10, "pneumonia": 10, "tumor": 1}, slices=3)
    with caplog.at_level(logging.WARNING):
        load_folder(tmp_path, cfg(group_pattern=PATTERN))
    warned = [r.getMessage() for r in caplog.records if r.name == "benchmark.data.splits"]
    assert warned and all("class 'tumor'" in w and "index" not in w for w in warned), warned


def patient_labels(patients: dict[int, tuple[int, int]]) -> tuple[np.ndarray, list[str]]:
    """Labels and groups of {class: (patients, images each)}, patient numbers running on across classes."""
    labels, groups = [], []
    for label, (n_patients, n_images) in patients.items():
        for _ in range(n_patients):
            groups += [f"p{len(set(groups)):02d}"] * n_images
            labels += [label] * n_images
    return np.array(labels), groups


def test_group_split_off_picks_a_fold_with_every_class_when_one_exists(caplog):
    """57 images of 15 patients, 3 of class 'gamma': sklearn's first fold leaves 'gamma' out of test,
    although another fold of the same seed gives test one of its patients."""
    labels, groups = patient_labels({0: (8, 4), 1: (4, 4), 2: (3, 3)})
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    _, first = next(splitter.split(np.zeros(len(labels)), labels, groups))
    assert 2 not in labels[first]  # what the split was before
    with caplog.at_level(logging.WARNING):
        kept, taken = group_split_off(labels, groups, 0.2, 0, "test", ["alpha", "beta", "gamma"])
    assert set(labels[taken].tolist()) == set(labels[kept].tolist()) == {0, 1, 2}
    assert not {groups[i] for i in kept} & {groups[i] for i in taken}
    assert 0.15 < len(taken) / len(labels) < 0.25
    assert "group-aware split" not in caplog.text
    again = group_split_off(labels, groups, 0.2, 0, "test", ["alpha", "beta", "gamma"])
    assert np.array_equal(again[1], taken)


def test_a_first_fold_with_every_class_is_kept_although_another_is_closer_to_the_fraction():
    """Grouped splits that were already fine stay as they were (the data fingerprint, and with it every
    run, cache and study, depends on them): 70 images of 21 patients, sklearn's first fold of seed 0 has
    every class on both sides but takes 26% where its other folds take 19%."""
    labels, groups = patient_labels({0: (10, 3), 1: (6, 5), 2: (5, 2)})
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    first_kept, first = next(splitter.split(np.zeros(len(labels)), labels, groups))
    assert missing_classes(labels, first_kept, first) == 0 and len(first) / len(labels) > 0.25
    kept, taken = group_split_off(labels, groups, 0.2, 0, "test", ["alpha", "beta", "gamma"])
    assert np.array_equal(taken, np.sort(first)) and np.array_equal(kept, np.sort(first_kept))


def test_a_grouped_three_way_split_gives_test_a_patient_of_a_three_patient_class():
    labels, groups = patient_labels({0: (8, 4), 1: (4, 4), 2: (3, 3)})
    for seed in range(3):
        splits = grouped_three_way(labels, groups, [0.7, 0.1, 0.2], seed, ["alpha", "beta", "gamma"])
        assert set(labels[splits["test"]].tolist()) == {0, 1, 2}
        assert set(labels[splits["train"]].tolist()) == {0, 1, 2}


def test_when_no_fold_can_cover_a_class_the_fold_missing_fewest_is_taken_and_named(caplog):
    labels, groups = patient_labels({0: (8, 4), 1: (4, 4), 2: (1, 3)})  # one 'gamma' patient
    with caplog.at_level(logging.WARNING):
        kept, taken = group_split_off(labels, groups, 0.2, 0, "test", ["alpha", "beta", "gamma"])
    assert missing_classes(labels, kept, taken) == 1  # only 'gamma', on one side
    assert {0, 1} <= set(labels[taken].tolist()) and {0, 1} <= set(labels[kept].tolist())
    assert "class 'gamma' (too few groups" in caplog.text  # counted among the images being split (QA)
    assert f"of the 13 groups of the {len(labels)} images being split into 5" in caplog.text
    assert "among them that class has 1 group(s))" in caplog.text


def test_a_split_sklearn_refuses_is_one_line_and_a_test_fold_leaving_an_unsplittable_rest_is_avoided():
    """Every class with fewer images than folds: sklearn's ValueError becomes our one-line error; and
    the test fold is chosen so that the rest can still give a validation set (a patient tree of 4
    patients per class, 2 slices each, split 0.7/0.1/0.2)."""
    with pytest.raises(BenchmarkError, match="cannot split off a val set of 12% by group"):
        group_split_off(np.repeat([0, 1, 2], 3), [str(i) for i in range(9)], 0.125, 0, "val", ["a", "b", "c"])
    labels = np.repeat([0, 1, 2], 8)
    groups = [f"p{i // 2}" for i in range(24)]
    splits = grouped_three_way(labels, groups, [0.7, 0.1, 0.2], 0, ["a", "b", "c"])
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(24))
    assert all(len(rows) for rows in splits.values())


def test_a_group_names_plural_is_a_word():
    """Review: "studys" and "seriess" where a report counted dataset.group_name=study or series."""
    from benchmark.data.groups import plural

    assert [plural(n) for n in ("patient", "study", "series", "box", "day", "subjects")] == [
        "patients", "studies", "series", "boxes", "days", "subjects"]
