"""The leakage audit on real files written here: exact, near, name and DICOM duplicates; dedupe."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.audit import (
    BLOCK_ELEMENTS,
    audit,
    audit_counts,
    audit_record,
    drop_for_dedupe,
    find_duplicates,
    near_pairs,
    near_pairs_between,
    reported_findings,
)
from benchmark.data.dataset import Split
from benchmark.data.images import DecodeOptions
from benchmark.data.scan import ScanRecord, scan_files
from benchmark.errors import BenchmarkError
from benchmark.files import file_sha256
from tests.data.test_scan import smooth_field

NEAR_BITS = 28


def leaky_dataset(root: Path) -> tuple[dict[str, Split], dict[str, ScanRecord]]:
    """train: originals; val: a half-size copy; test: a re-compressed PNG, a JPEG re-encode and an
    unrelated image; one file name repeats across splits."""
    files = {"train": [], "val": [], "test": []}

    def save(split: str, name: str, image: Image.Image, **kwargs) -> None:
        (root / split / "a").mkdir(parents=True, exist_ok=True)
        image.save(root / split / "a" / name, **kwargs)
        files[split].append(f"{split}/a/{name}")

    scan, jpeg = Image.fromarray(smooth_field(11, 96)).convert("RGB"), Image.fromarray(smooth_field(12, 128))
    save("train", "scan.png", scan, compress_level=1)
    save("train", "ct.jpg", jpeg, quality=95)
    save("train", "notes.png", Image.fromarray(smooth_field(13)))
    save("val", "ct_small.png", jpeg.resize((64, 64), Image.Resampling.BILINEAR))
    save("test", "scan_resaved.png", scan, compress_level=9)
    save("test", "ct_q70.jpg", jpeg, quality=70)
    save("test", "notes.png", Image.fromarray(smooth_field(14)))  # same name, different image
    ids = [i for split in files.values() for i in split]
    records = scan_files(root, ids, {i: file_sha256(root / i) for i in ids}, DecodeOptions(), None)
    splits = {name: Split(tuple(split), np.zeros(len(split), int)) for name, split in files.items()}
    return splits, records


def found(pairs, kind: str) -> set[tuple[str, str]]:
    rows = pairs[pairs["kind"] == kind]
    return set(zip(rows["file_a"], rows["file_b"], strict=True))


def test_exact_near_and_name_duplicates_across_splits(tmp_path: Path):
    splits, records = leaky_dataset(tmp_path)
    pairs = find_duplicates(splits, records, NEAR_BITS)
    assert list(pairs.columns) == ["kind", "split_a", "file_a", "split_b", "file_b", "distance"]
    assert found(pairs, "exact") == {("train/a/scan.png", "test/a/scan_resaved.png")}
    assert found(pairs, "near") == {
        ("train/a/ct.jpg", "val/a/ct_small.png"),
        ("train/a/ct.jpg", "test/a/ct_q70.jpg"),
        ("val/a/ct_small.png", "test/a/ct_q70.jpg"),
    }
    assert found(pairs, "name") == {("train/a/notes.png", "test/a/notes.png")}
    assert (pairs.loc[pairs["kind"] == "exact", "distance"] == 0).all()
    assert (pairs.loc[pairs["kind"] == "near", "distance"] <= NEAR_BITS).all()
    assert pairs.loc[pairs["kind"] == "name", "distance"].isna().all()
    assert audit_counts(pairs)["near"] == {"train~test": 1, "train~val": 1, "val~test": 1}


def test_dedupe_drop_removes_the_later_split_copy_and_warn_logs_leakage(tmp_path: Path, caplog):
    splits, records = leaky_dataset(tmp_path)
    dropped = audit(splits, records, NEAR_BITS, "drop").dropped
    assert dropped == {"test/a/scan_resaved.png", "test/a/ct_q70.jpg", "val/a/ct_small.png"}
    with caplog.at_level(logging.WARNING):
        result = audit(splits, records, NEAR_BITS, "warn")
    assert not result.dropped and "LEAKAGE:" in caplog.text and "exact train~test: 1" in caplog.text
    record = audit_record(result)
    assert record["cross_split"] == {"train~test": 2, "train~val": 1, "val~test": 1}
    assert json.loads(json.dumps(record))["n_pairs"] == len(result.pairs)


def test_what_is_reported_drops_dropped_copies_and_keeps_hints_apart(tmp_path: Path):
    splits, records = leaky_dataset(tmp_path)
    warned = reported_findings(audit_record(audit(splits, records, NEAR_BITS, "warn")))
    assert warned == {"cross_split_duplicates": {"exact": 1, "near": 3, "sop_instance_uid": 0},
                      "dropped_duplicates": 0, "cross_split_hints": {"name": 1, "patient_id": 0},
                      "duplicates_with_other_labels": {"exact": 0, "near": 0, "sop_instance_uid": 0}}
    dropped = reported_findings(audit_record(audit(splits, records, NEAR_BITS, "drop")))
    assert dropped["cross_split_duplicates"] == {"exact": 0, "near": 0, "sop_instance_uid": 0}
    assert dropped["dropped_duplicates"] == 3 and dropped["cross_split_hints"]["name"] == 1


def test_with_patient_groups_a_file_name_repeated_across_patients_is_no_finding(tmp_path: Path):
    """A PACS export names every patient's first slice IM-0001-0001.dcm; only a name shared within one
    patient (a group the split let into two splits) is worth a look."""
    splits, records = leaky_dataset(tmp_path)
    patients = {"train": ("p1", "p1", "p2"), "val": ("p3",), "test": ("p1", "p4", "p5")}
    grouped = {name: Split(split.ids, split.labels, patients[name]) for name, split in splits.items()}
    assert found(find_duplicates(grouped, records, NEAR_BITS), "name") == set()  # notes.png: p2 and p5
    patients["test"] = ("p1", "p4", "p2")  # p2 in train and test: its notes.png is worth a look again
    grouped = {name: Split(split.ids, split.labels, patients[name]) for name, split in splits.items()}
    expected = {("train/a/notes.png", "test/a/notes.png")}
    assert found(find_duplicates(grouped, records, NEAR_BITS), "name") == expected


def test_the_name_warning_advises_grouping_only_where_there_are_no_groups(tmp_path: Path, caplog):
    """QA: with patients given, "split by patient (dataset.groups...)" was advice already taken."""
    splits, records = leaky_dataset(tmp_path)
    patients = {"train": ("p1", "p1", "p2"), "val": ("p3",), "test": ("p1", "p4", "p2")}
    grouped = {name: Split(split.ids, split.labels, patients[name]) for name, split in splits.items()}
    for data, advice in ((splits, "split by patient (dataset.groups"),
                         (grouped, "that one patient is not filed under two group ids")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            audit(data, records, NEAR_BITS, "warn")
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LEAKAGE?")]
        assert advice in line and ("dataset.groups" in line) == (data is splits), line


def test_dedupe_error_names_the_counts_and_the_fix(tmp_path: Path):
    splits, records = leaky_dataset(tmp_path)
    with pytest.raises(BenchmarkError, match=r"exact train~test: 1.*dedupe=drop.*remove the files"):
        audit(splits, records, NEAR_BITS, "error")
    with pytest.raises(BenchmarkError, match="warn | drop | error"):
        audit(splits, records, NEAR_BITS, "delete")


def test_within_split_duplicates_are_reported_but_never_dropped():
    def record(pixels: str, dhash: int) -> ScanRecord:
        return ScanRecord(None, pixels, dhash, "8-bit", {})

    records = {
        "t/1.png": record("p1", 0b1111),
        "t/2.png": record("p1", 0b1111),
        "t/3.png": record("p3", 0b0111),
    }
    splits = {"train": Split(tuple(records), np.zeros(3, int)), "test": Split((), np.zeros(0, int))}
    result = audit(splits, records, NEAR_BITS, "drop")
    assert result.counts["exact"] == {"train~train": 1} and result.counts["near"] == {"train~train": 2}
    assert result.dropped == frozenset() and result.counts["name"] == {}


def test_copies_of_one_image_under_two_labels_are_label_noise_and_near_ones_to_check(caplog):
    """QA: a nodule slice re-encoded under normal/ sat in train with its original, reported only in
    audit.csv. An exact copy under another label is noise; a near one may be two neighbouring slices that
    really differ, so it is named to check; a copy under its own label and a different image are neither."""
    def record(pixels: str, dhash: int) -> ScanRecord:
        return ScanRecord(None, pixels, dhash, "8-bit", {})

    records = {"nodule/a.png": record("p1", 0b1111), "normal/a_exact.png": record("p1", 0b1111),
               "nodule/a_again.png": record("p1", 0b1111), "normal/a_copy.jpg": record("p2", 0b1110),
               "normal/other.png": record("p9", (1 << 256) - 1)}
    splits = {"train": Split(tuple(records), np.array([0, 1, 0, 1, 1])), "test": Split((), np.zeros(0, int))}
    with caplog.at_level(logging.WARNING):
        result = audit(splits, records, NEAR_BITS, "warn")
    assert result.label_conflicts == {"exact": 1, "near": 2, "sop_instance_uid": 0}
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("LABEL NOISE: 1 pair(s) of one image carry different labels (e.g. nodule/a.png "
                            "and normal/a_exact.png)") for m in said), said
    assert any(m.startswith("LABELS TO CHECK: 2 near-duplicate pair(s) carry different labels") for m in said)
    assert reported_findings(audit_record(result))["duplicates_with_other_labels"]["exact"] == 1


def test_dicom_instance_and_patient_across_splits_and_array_ids_have_no_file_names():
    def dicom(sop: str, patient: str, dhash: int) -> ScanRecord:
        tags = {"SOPInstanceUID": sop, "PatientID": patient}
        return ScanRecord(None, f"pixels-{dhash:x}", dhash, "dicom voi", tags)

    records = {
        "train/1.dcm": dicom("1.1", "P1", 0),
        "train/2.dcm": dicom("1.2", "P1", 2**64 - 1),  # one patient twice in train: expected
        "test/3.dcm": dicom("1.1", "P2", 0x0F0F0F0F0F0F0F0F),  # the same instance re-exported: other pixels
        "test/4.dcm": dicom("1.4", "P1", 0x00FF00FF00FF00FF),  # a train patient in test
        "train/7": ScanRecord(None, "a", 0x3333333333333333, "8-bit", {}),
        "test/7": ScanRecord(None, "b", 0x5555555555555555, "8-bit", {}),  # MedMNIST-style ids
    }
    splits = {
        "train": Split(("train/1.dcm", "train/2.dcm", "train/7"), np.zeros(3, int)),
        "test": Split(("test/3.dcm", "test/4.dcm", "test/7"), np.zeros(3, int)),
    }
    pairs = find_duplicates(splits, records, 0)
    assert found(pairs, "sop_instance_uid") == {("train/1.dcm", "test/3.dcm")}
    assert found(pairs, "patient_id") == {("train/1.dcm", "test/4.dcm")}
    assert found(pairs, "name") == set() and found(pairs, "exact") == set() and found(pairs, "near") == set()
    assert drop_for_dedupe(pairs) == {"test/3.dcm"}  # the same SOP instance is the same image


def test_unreadable_images_take_part_in_the_name_check_only():
    bad = ScanRecord("cannot read image", None, None, None, {})
    records = {"train/x.png": bad, "test/x.png": bad}
    splits = {name: Split((f"{name}/x.png",), np.zeros(1, int)) for name in ("train", "test")}
    assert list(find_duplicates(splits, records, NEAR_BITS)["kind"]) == ["name"]


def test_blocked_popcount_comparison_matches_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 300, dtype=np.uint64)
    hashes[150:200] = hashes[:50] ^ rng.choice([0, 1, 6, 2**40 + 1, 2**63 + 7], 50).astype(np.uint64)
    assert BLOCK_ELEMENTS > 300 * 300  # one block in normal use; here many small ones
    i, j, d = near_pairs(hashes, 3, block_elements=1000)
    expected = {
        (a, b, bin(int(hashes[a]) ^ int(hashes[b])).count("1"))
        for a in range(300)
        for b in range(a + 1, 300)
        if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= 3
    }
    assert set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == expected and len(expected) >= 40


def test_blocked_comparison_between_two_sets_matches_brute_force():
    """near_pairs_between (external validation: a site against a run) finds exactly the pairs across the
    sets, in blocks of the first set's rows; duplicates within either set are not its business."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, (120, 2), dtype=np.uint64)
    b = rng.integers(0, 2**63, (70, 2), dtype=np.uint64)
    b[:30] = a[:30] ^ rng.choice([0, 1, 6, 2**40 + 1], (30, 2)).astype(np.uint64)
    a[60] = a[61]  # a pair within `a`: never reported

    def bits(x: np.ndarray, y: np.ndarray) -> int:
        return sum(bin(int(u) ^ int(v)).count("1") for u, v in zip(x, y, strict=True))

    i, j, d = near_pairs_between(a, b, 4, block_elements=500)
    expected = {(r, c, bits(a[r], b[c])) for r in range(120) for c in range(70) if bits(a[r], b[c]) <= 4}
    assert set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == expected and len(expected) >= 20
    assert all(len(found) == 0 for found in near_pairs_between(a, b[:0], 4))


def test_the_figure_shows_cross_split_pairs_only(tmp_path: Path):
    from benchmark.figures.audit import audit_figure

    splits, records = leaky_dataset(tmp_path)
    pairs = find_duplicates(splits, records, NEAR_BITS)
    load = lambda i: np.asarray(Image.open(tmp_path / i))  # noqa: E731
    path = audit_figure(pairs, load, tmp_path / "audit.png", n_pairs=3)
    assert path == tmp_path / "audit.png" and Image.open(path).size[0] > 300
    within = pairs.iloc[:0]
    assert audit_figure(within, lambda i: None, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
