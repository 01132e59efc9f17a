"""The leakage audit: the same image (or patient) in more than one split inflates every test metric.

From the decode-once scan (`scan.py`) it finds, across splits and within one:
- exact: identical decoded pixels (a PNG re-saved at another compression level is exact),
- near: 256-bit difference hashes at most `near_bits` apart (JPEG re-encodes, resized copies),
- name: the same file name in two splits, sop_instance_uid / patient_id: the same DICOM instance or
  patient in two splits (patient_id only across splits: many images of one patient in a split is normal).

Exact, near and sop_instance_uid findings across splits are leakage that `dataset.dedupe` handles
(warn | drop | error); name and patient_id findings are always warnings (a patient in two splits is fixed
by splitting by patient: dataset.groups / group_pattern / group_depth).
"""

import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.data.dataset import SPLITS, Split
from benchmark.data.scan import HASH_BITS, ScanRecord
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)
KINDS = ("exact", "near", "sop_instance_uid", "name", "patient_id")
LEAK_KINDS = ("exact", "near", "sop_instance_uid")  # the same image in two splits: dedupe applies
ADVISORY_KINDS = ("name", "patient_id")  # suspicious, fixed by other means: always a warning
DEDUPE = ("warn", "drop", "error")
COLUMNS = ("kind", "split_a", "file_a", "split_b", "file_b", "distance")
BLOCK_ELEMENTS = 1 << 22  # hash pairs compared at once (32 MiB of uint64)


@dataclass(frozen=True)
class AuditResult:
    pairs: pd.DataFrame  # COLUMNS, one row per finding
    counts: dict[str, dict[str, int]]  # kind -> "split_a~split_b" -> pairs
    dropped: frozenset[str] = frozenset()  # ids dedupe=drop removes
    dedupe: str = "warn"
    near_bits: int = 28
    label_conflicts: dict[str, int] | None = None  # kind -> pairs under two labels (`other_labels`)


def split_rank(name: str) -> tuple[int, str]:
    """train < val < test < any other split (by name): the later split's copy is the one dropped."""
    return (SPLITS.index(name) if name in SPLITS else len(SPLITS), name)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1, dtype=np.uint8)


def as_words(hashes: list[int]) -> np.ndarray:
    """Python-int hashes of HASH_BITS bits -> (n, HASH_BITS / 64) uint64 words, for vectorised XOR."""
    n_words = HASH_BITS // 64
    raw = b"".join(int(h).to_bytes(HASH_BITS // 8, "big") for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), n_words)


def hamming(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(r, words) and (c, words) uint64 hashes -> (r, c) Hamming distances in bits."""
    return popcount(rows[:, None, :] ^ columns[None, :, :]).sum(axis=-1, dtype=np.uint16)


def near_pairs(
    hashes: np.ndarray, near_bits: int, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with Hamming distance <= near_bits, as (i, j, distance) arrays; `hashes` is
    (n,) or (n, words) uint64. Compared in blocks of rows (about `block_elements` words each) so memory
    stays bounded."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    hashes = hashes[:, None] if hashes.ndim == 1 else hashes
    n = len(hashes)
    block = max(1, block_elements // max(n * hashes.shape[1], 1))
    found_i, found_j, found_d = [], [], []
    for start in range(0, n, block):
        rows = hashes[start : start + block]
        columns = hashes[start + 1 :]  # row r (global start + r) is compared with global columns > it
        distance = hamming(rows, columns)
        r, c = np.nonzero(distance <= near_bits)
        keep = c >= r  # column index c is global start + 1 + c: keep only j > i
        r, c = r[keep], c[keep]
        found_i.append(start + r)
        found_j.append(start + 1 + c)
        found_d.append(distance[r, c])
    if not found_i:
        return np.empty(0, int), np.empty(0, int), np.empty(0, np.uint8)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def near_pairs_between(
    a: np.ndarray, b: np.ndarray, near_bits: int, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i of a, j of b) with Hamming distance <= near_bits, as (i, j, distance) arrays; `a` and `b`
    are (n, words) uint64. Only the len(a) x len(b) pairs across the two sets: neither set is compared with
    itself. Blocks of `a`'s rows keep memory bounded."""
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    block = max(1, block_elements // max(b.size, 1))
    found_i, found_j, found_d = [np.empty(0, int)], [np.empty(0, int)], [np.empty(0, np.uint16)]
    for start in range(0, len(a) if len(b) else 0, block):
        distance = hamming(a[start : start + block], b)
        r, c = np.nonzero(distance <= near_bits)
        found_i.append(start + r)
        found_j.append(c)
        found_d.append(distance[r, c])
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def basename(image_id: str) -> str | None:
    """A file name to compare, or None for ids that are not files (MedMNIST's `split/index`)."""
    name = image_id.replace("\\", "/").rsplit("/", 1)[-1]
    return name if "." in name.strip(".") else None


def star_pairs(kind: str, members: list[tuple[str, str]], within: bool) -> list[tuple]:
    """Pairs of one group of equals (members in split order): each member with the group's first, so a
    group of k equal images is k - 1 findings; within=False keeps only pairs across splits."""
    (first_split, first_id), rest = members[0], members[1:]
    distance = 0 if kind == "exact" else None
    return [
        (kind, first_split, first_id, split, image_id, distance)
        for split, image_id in rest
        if within or split != first_split
    ]


def find_duplicates(splits: dict[str, Split], records: dict[str, ScanRecord], near_bits: int) -> pd.DataFrame:
    """Every finding as a row of COLUMNS: split_a is the earlier split (train < val < test), distance the
    dHash Hamming distance in bits for exact and near pairs, empty for the others. Unreadable images and
    ids without a record take part in the name comparison only."""
    order = [(name, image_id) for name in sorted(splits, key=split_rank) for image_id in splits[name].ids]
    # With patient/study groups, one file name in several groups is the export's naming (IM-0001-0001.dcm
    # in every patient's folder), not a hint: names are compared within a group.
    group_of = {image_id: group for split in splits.values() if split.groups is not None
                for image_id, group in zip(split.ids, split.groups, strict=True)}
    rows: list[tuple] = []
    groups: dict[str, dict[str, list]] = {kind: defaultdict(list) for kind in KINDS if kind != "near"}
    readable: list[int] = []
    for index, (split, image_id) in enumerate(order):
        record = records.get(image_id)
        name = basename(image_id)
        if name is not None:
            groups["name"][(name, group_of.get(image_id))].append((split, image_id))
        if record is None:
            continue
        if record.reason is None and record.pixel_hash is not None and record.dhash is not None:
            readable.append(index)
            groups["exact"][record.pixel_hash].append((split, image_id))
        if record.dicom.get("SOPInstanceUID"):
            groups["sop_instance_uid"][record.dicom["SOPInstanceUID"]].append((split, image_id))
        if record.dicom.get("PatientID"):
            groups["patient_id"][record.dicom["PatientID"]].append((split, image_id))
    for kind, by_key in groups.items():
        for members in by_key.values():
            if len(members) > 1:
                rows.extend(star_pairs(kind, members, within=kind in ("exact", "sop_instance_uid")))
    if readable:
        dhashes = as_words([records[order[k][1]].dhash for k in readable])
        pixel_codes = pd.factorize(pd.Series([records[order[k][1]].pixel_hash for k in readable]))[0]
        i, j, distance = near_pairs(dhashes, near_bits)
        differ = pixel_codes[i] != pixel_codes[j]
        for a, b, d in zip(i[differ], j[differ], distance[differ], strict=True):
            (split_a, file_a), (split_b, file_b) = order[readable[a]], order[readable[b]]
            rows.append(("near", split_a, file_a, split_b, file_b, int(d)))
    pairs = pd.DataFrame(rows, columns=list(COLUMNS))
    pairs["distance"] = pairs["distance"].astype("Int64")
    pairs["kind"] = pd.Categorical(pairs["kind"], categories=list(KINDS), ordered=True)
    pairs = pairs.sort_values(["kind", "distance", "split_a", "file_a", "split_b", "file_b"], kind="stable")
    pairs["kind"] = pairs["kind"].astype(str)
    return pairs.reset_index(drop=True)


def cross_split(pairs: pd.DataFrame, kinds: tuple[str, ...] = LEAK_KINDS) -> pd.DataFrame:
    return pairs[pairs["kind"].isin(kinds) & (pairs["split_a"] != pairs["split_b"])]


def other_labels(pairs: pd.DataFrame, splits: dict[str, Split], dropped: frozenset[str]) -> pd.DataFrame:
    """The duplicate pairs (exact, near, the same SOPInstanceUID) under two labels, in any splits and both
    kept (dedupe=drop removes a later split's copy): an exact or same-instance pair is label noise the
    model is trained or tested on; a near pair may be too (a JPEG re-encode filed under another class), or
    two neighbouring slices that really differ, so it is one to check."""
    label_of = {image_id: label for split in splits.values()
                for image_id, label in zip(split.ids, split.labels, strict=True)}
    same = pairs[pairs["kind"].isin(LEAK_KINDS)]
    differ = np.array([label_of.get(a) != label_of.get(b) and not {a, b} & dropped
                       for a, b in zip(same["file_a"], same["file_b"], strict=True)], dtype=bool)
    return same[differ]


def audit_counts(pairs: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per kind, findings per split pair, e.g. {"exact": {"train~test": 2, "train~train": 1}, "near": {}}."""
    counts: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for (kind, a, b), n in pairs.groupby(["kind", "split_a", "split_b"], sort=True).size().items():
        counts.setdefault(kind, {})[f"{a}~{b}"] = int(n)
    return counts


def drop_for_dedupe(pairs: pd.DataFrame) -> set[str]:
    """For each exact, near or same-SOPInstanceUID pair across splits, the member in the later split
    (train < val < test); within-split pairs never drop anything, so train keeps its images."""
    dropped = set()
    for row in cross_split(pairs).itertuples(index=False):
        later = row.file_b if split_rank(row.split_b) > split_rank(row.split_a) else row.file_a
        dropped.add(later)
    return dropped


def summary(counts: dict[str, dict[str, int]], kinds: tuple[str, ...]) -> str:
    parts = [
        f"{kind} {pair}: {n}"
        for kind in kinds
        for pair, n in counts.get(kind, {}).items()
        if len(set(pair.split("~"))) > 1
    ]
    return ", ".join(parts)


def check_dedupe(dedupe: str) -> None:
    """Checked before the scan too (data.check_path): a typo would otherwise cost decoding every image."""
    if dedupe not in DEDUPE:
        raise BenchmarkError(f"dataset.dedupe={dedupe} is not one of {' | '.join(DEDUPE)}")


def audit(
    splits: dict[str, Split], records: dict[str, ScanRecord], near_bits: int, dedupe: str
) -> AuditResult:
    """Find duplicates and act on cross-split leakage as `dedupe` says: warn (log LEAKAGE), drop (return
    the later split's copies in `dropped`) or error (raise BenchmarkError)."""
    check_dedupe(dedupe)
    if (
        isinstance(near_bits, bool)
        or not isinstance(near_bits, int | np.integer)
        or not 0 <= near_bits < HASH_BITS
    ):
        raise BenchmarkError(
            f"dataset.near_duplicate_bits={near_bits} must be a whole number 0..{HASH_BITS - 1} "
            f"(bits of a {HASH_BITS}-bit perceptual hash; 28 is the default)"
        )
    pairs = find_duplicates(splits, records, int(near_bits))
    counts = audit_counts(pairs)
    advisory = summary(counts, ADVISORY_KINDS)
    if advisory:
        grouped = any(split.groups is not None for split in splits.values())
        log.warning(
            "LEAKAGE?: the same file name or DICOM PatientID in more than one split (%s): check they are "
            "different images, and %s",
            advisory,
            "that one patient is not filed under two group ids (audit.csv lists the pairs)" if grouped else
            "split by patient (dataset.groups, group_pattern or group_depth) if patients are shared",
        )
    leaks = summary(counts, LEAK_KINDS)
    dropped: frozenset[str] = frozenset()
    if leaks and dedupe == "error":
        raise BenchmarkError(
            f"the same images are in more than one split ({leaks}): set dataset.dedupe=drop to drop the "
            "later split's copies, or remove the files"
        )
    if leaks and dedupe == "warn":
        log.warning(
            "LEAKAGE: the same images are in more than one split (%s): test metrics are optimistic; set "
            "dataset.dedupe=drop (or error), or remove the files",
            leaks,
        )
    if leaks and dedupe == "drop":
        dropped = frozenset(drop_for_dedupe(pairs))
        log.warning(
            "LEAKAGE: dropped %d images that repeat an image of an earlier split (%s)", len(dropped), leaks
        )
    conflicts = other_labels(pairs, splits, dropped)
    warn_of_other_labels(conflicts)
    by_kind = {kind: int((conflicts["kind"] == kind).sum()) for kind in LEAK_KINDS}
    return AuditResult(pairs, counts, dropped, dedupe, int(near_bits), by_kind)


def warn_of_other_labels(conflicts: pd.DataFrame) -> None:
    """`other_labels`' pairs in the log, an example of each: noise, then the near pairs to check."""
    noise = conflicts[conflicts["kind"] != "near"]
    if len(noise):
        log.warning("LABEL NOISE: %d pair(s) of one image carry different labels (e.g. %s and %s): correct "
                    "the labels or remove a copy (the run's audit.csv lists every duplicate pair)",
                    len(noise), noise.iloc[0]["file_a"], noise.iloc[0]["file_b"])
    near = conflicts[conflicts["kind"] == "near"]
    if len(near):
        log.warning("LABELS TO CHECK: %d near-duplicate pair(s) carry different labels (e.g. %s and %s): a "
                    "copy filed under another class is label noise, neighbouring slices that differ are not "
                    "(audit.csv)", len(near), near.iloc[0]["file_a"], near.iloc[0]["file_b"])


def reported_findings(record: dict) -> dict:
    """What metrics.json, the leaderboard and the model card say about an `audit_record`: the leakage left
    in the data per kind (none once dedupe=drop removed the later copies), how many copies were dropped,
    and the name/PatientID hints, which are reasons to look, not leakage by themselves."""
    across = {
        kind: sum(n for pair, n in by_pair.items() if len(set(pair.split("~"))) > 1)
        for kind, by_pair in record.get("counts", {}).items()
    }
    dropped = record.get("dedupe") == "drop"
    return {
        "cross_split_duplicates": {kind: 0 if dropped else across.get(kind, 0) for kind in LEAK_KINDS},
        "dropped_duplicates": len(record.get("dropped", [])),
        "cross_split_hints": {kind: across.get(kind, 0) for kind in ADVISORY_KINDS},
        "duplicates_with_other_labels": dict(record.get("label_conflicts") or {}),
    }


def audit_record(result: AuditResult) -> dict:
    """The audit for manifest.json: settings, counts per kind, cross-split leakage, dropped files."""
    leaks = cross_split(result.pairs)
    return {
        "dedupe": result.dedupe,
        "near_duplicate_bits": result.near_bits,
        "counts": result.counts,
        "n_pairs": len(result.pairs),
        "cross_split": {
            f"{a}~{b}": int(n) for (a, b), n in leaks.groupby(["split_a", "split_b"]).size().items()
        },
        "dropped": sorted(result.dropped),
        "label_conflicts": result.label_conflicts,
    }


def time_near_duplicates(n_a: int = 10_000, n_b: int = 2_000, near_bits: int = 28, seed: int = 0) -> float:
    """Seconds `find_duplicates` takes for n_a train and n_b test images (random hashes, a few planted
    near copies): the all-pairs comparison must take seconds, not minutes. Measure with
    `python -c "from benchmark.data.audit import time_near_duplicates as t; print(t(10_000, 2_000))"`."""
    rng = np.random.default_rng(seed)
    dhashes = [int.from_bytes(rng.bytes(HASH_BITS // 8), "big") for _ in range(n_a + n_b)]
    dhashes[n_a : n_a + 10] = [h ^ 0b101 for h in dhashes[:10]]  # 10 planted near copies, 2 bits apart
    ids = [f"train/{i}.png" for i in range(n_a)] + [f"test/t{i}.png" for i in range(n_b)]
    records = {
        image_id: ScanRecord(None, f"{k:040x}", int(h), "8-bit", {})
        for k, (image_id, h) in enumerate(zip(ids, dhashes, strict=True))
    }
    splits = {
        "train": Split(tuple(ids[:n_a]), np.zeros(n_a, int)),
        "test": Split(tuple(ids[n_a:]), np.zeros(n_b, int)),
    }
    started = time.perf_counter()
    pairs = find_duplicates(splits, records, near_bits)
    seconds = time.perf_counter() - started
    assert (pairs["kind"] == "near").sum() >= 10
    return seconds
