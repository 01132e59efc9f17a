"""`python -m benchmark.evaluate run=<run dir> dataset=folder dataset.path=<other site> [name=siteB]`.

External validation: a finished run scored on data from elsewhere, with the run's own model, image size,
decoding and preprocessing, every image of the other data counted (its split fractions do not matter),
classes matched by name. Writes <run>/external/<name>/metrics.json (the full metric set with intervals,
patient-grouped when the other data has groups) and predictions.csv; the report shows internal against
external per run. Images of the other data that are the run's own (copied, re-encoded or resized: the
leakage audit's hashes; or the same DICOM instance) are counted per run split and warned of: they are not
external evidence.
"""

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.data import SPLITS, Dataset, dataset_name, files_root, load_dataset
from benchmark.data.audit import as_words, hamming, near_pairs_between, split_rank
from benchmark.data.images import DecodeOptions
from benchmark.data.pixels import split_pixels
from benchmark.data.scan import HASH_BITS, ScanRecord, scan_files
from benchmark.data.splits import TEST_ONLY
from benchmark.errors import BenchmarkError
from benchmark.files import file_sha256, read_json, write_json, write_text
from benchmark.metrics.evaluate import Settings, evaluate
from benchmark.metrics.predictions import predictions_frame
from benchmark.runs.layout import EXTERNAL
from benchmark.runs.model_card import with_interval

log = logging.getLogger(__name__)
DECODING = ("window", "intensity", "resize")  # follow the run unless the command line sets them
# How an other-data image repeats a run image, closest first (a shared DICOM SOPInstanceUID is one instance).
COPY_KINDS = ("file", "exact", "sop_instance_uid", "near")
EXAMPLES = 3  # repeated images named per run split in metrics.json


def external_dataset(run_cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The other data's `dataset` node: the config group as `python -m benchmark` composes it from these
    overrides, with the run's decoding where the overrides do not set it."""
    if not overrides:
        raise BenchmarkError("no other data given: add dataset=folder dataset.path=/data/other_site")
    with initialize_config_dir(config_dir=str(cli.CONF), version_base="1.3"):
        dataset = compose(config_name="config", overrides=overrides).dataset
    for key in DECODING:
        if key in run_cfg.dataset and not any(o.startswith(f"dataset.{key}=") for o in overrides):
            dataset[key] = run_cfg.dataset[key]
    if "split" in dataset and not any(o.startswith("dataset.split=") for o in overrides):
        dataset.split = list(TEST_ONLY)  # every image scored, however few a class has (no stratified split)
    return dataset


def class_map(run_classes: list[str], other: Dataset) -> np.ndarray:
    """Index in the run's classes of each of the other data's classes; an unknown class is an error."""
    unknown = [name for name in other.class_names if name not in run_classes]
    if unknown:
        raise BenchmarkError(
            f"class(es) {', '.join(unknown)} of the other data are not classes of the run "
            f"({', '.join(run_classes)}): rename the folders to the run's class names"
        )
    return np.array([run_classes.index(name) for name in other.class_names])


def run_images(run_dir: Path) -> pd.DataFrame:
    """The run's own images (file, split) from its splits.csv: what the other data must not repeat."""
    return pd.read_csv(run_dir / "splits.csv", usecols=["file", "split"], dtype=str)


def dhash_distance(a: ScanRecord, b: ScanRecord) -> int | None:
    """Difference-hash bits apart, None when either image could not be decoded."""
    if a.dhash is None or b.dhash is None:
        return None
    return int(hamming(as_words([a.dhash]), as_words([b.dhash]))[0, 0])


def first_run_image(run: list[tuple[str, str]], records: dict[str, ScanRecord],
                    key: Callable[[ScanRecord], str | None]) -> dict[str, tuple[str, str]]:
    """key -> the first run image (split, file) that has it, `run` in split order: the run image an
    audit pair would name."""
    first: dict[str, tuple[str, str]] = {}
    for split, run_file in run:
        value = key(records[run_file])
        if value:
            first.setdefault(value, (split, run_file))
    return first


def near_across(run: list[tuple[str, str]], own_records: dict[str, ScanRecord], other_ids: list[str],
                other_records: dict[str, ScanRecord], near_bits: int) -> list[tuple]:
    """(split, run_file, file, "near", distance) for every decoded (run, other) pair whose difference
    hashes are at most `near_bits` apart and whose pixels differ (the same pixels are "exact"): the other
    data's hashes against the run's, never within one."""
    run = [(split, f) for split, f in run if own_records[f].dhash is not None]
    others = [image_id for image_id in other_ids if other_records[image_id].dhash is not None]
    if not run or not others:
        return []
    which, run_index, distance = near_pairs_between(
        as_words([other_records[image_id].dhash for image_id in others]),
        as_words([own_records[f].dhash for _, f in run]), near_bits)
    return [(*run[k], others[m], "near", int(d)) for m, k, d in zip(which, run_index, distance, strict=True)
            if own_records[run[k][1]].pixel_hash != other_records[others[m]].pixel_hash]


def copies_across(own: pd.DataFrame, own_records: dict[str, ScanRecord], other_ids: list[str],
                  other_records: dict[str, ScanRecord], near_bits: int) -> pd.DataFrame:
    """Each (run image, other-data image) pair that is one image, as (split, run_file, file, kind,
    distance): the same decoded pixels ("exact"), the same DICOM SOPInstanceUID ("sop_instance_uid": the
    instance re-exported; distance None when a side could not be decoded) or difference hashes at most
    `near_bits` apart ("near": re-encoded, resized). Only the N x M pairs across the two sets are
    compared: duplicates among the run's own images were its own leakage audit's business."""
    run = sorted(zip(own["split"], own["file"], strict=True), key=lambda row: split_rank(row[0]))
    by_pixels = first_run_image(run, own_records, lambda r: r.pixel_hash if r.readable else None)
    by_uid = first_run_image(run, own_records, lambda r: r.dicom.get("SOPInstanceUID"))
    rows: list[tuple] = []
    for image_id in other_ids:
        record = other_records[image_id]
        if record.readable and record.pixel_hash in by_pixels:
            rows.append((*by_pixels[record.pixel_hash], image_id, "exact", 0))
        if record.dicom.get("SOPInstanceUID") in by_uid:
            split, run_file = by_uid[record.dicom["SOPInstanceUID"]]
            rows.append((split, run_file, image_id, "sop_instance_uid",
                         dhash_distance(own_records[run_file], record)))
    rows.extend(near_across(run, own_records, other_ids, other_records, near_bits))
    return pd.DataFrame(rows, columns=["split", "run_file", "file", "kind", "distance"])


def copies_of_run_images(
    run_dir: Path, run_cfg: DictConfig, other_cfg: DictConfig, other: Dataset, near_bits: int
) -> pd.DataFrame | None:
    """Each image of the other data that is one of the run's training, validation or test images, with
    the run image it repeats: byte-identical files ("file"), the same decoded pixels ("exact"), the same
    DICOM SOPInstanceUID ("sop_instance_uid") or a perceptual hash at most `near_bits` apart ("near": a
    PNG re-saved as JPEG, resized, re-exported).
    A "site" that repeats them is not external evidence. The run's files are decoded where they lie
    (their scan records come from the cache the run filled, when it is still there); the other data's are
    those its load made. None when either side's images are arrays, not files, or the run's files are
    gone."""
    data_dir, cache_dir = Path(run_cfg.data_dir), Path(run_cfg.cache_dir)
    root, other_root = files_root(run_cfg.dataset, data_dir), files_root(other_cfg, data_dir)
    if root is None or other_root is None:
        log.warning("the run's or the other data's images are arrays, not files: overlap not checked")
        return None
    try:
        own = run_images(run_dir)
        own_hashes = {name: file_sha256(root / name) for name in own["file"]}
    except (OSError, ValueError) as error:
        log.warning("the run's own files could not be read (%s): overlap with them not checked", error)
        return None
    own_records = scan_files(root, list(own_hashes), own_hashes, DecodeOptions.from_config(run_cfg.dataset),
                             cache_dir)
    other_ids = [image_id for s in SPLITS for image_id in other.splits[s].ids]
    other_records = other.scans  # made by its load, with its decoding: not scanned again
    split_of = dict(zip(own["file"], own["split"], strict=True))
    run_file_of = {digest: name for name, digest in own_hashes.items()}
    same_bytes = pd.DataFrame(
        [(split_of[run_file_of[other.file_hashes[i]]], run_file_of[other.file_hashes[i]], i, "file", 0)
         for i in other_ids if other.file_hashes.get(i) in run_file_of],
        columns=["split", "run_file", "file", "kind", "distance"],
    )
    looks_same = copies_across(own, own_records, other_ids, other_records, near_bits)
    copies = pd.concat([same_bytes, looks_same], ignore_index=True)
    copies["rank"] = copies["kind"].map({kind: k for k, kind in enumerate(COPY_KINDS)})
    copies["distance"] = copies["distance"].astype("Int64")  # None: a UID match with an undecodable side
    copies = copies.sort_values(["rank", "distance", "file"], kind="stable").drop_duplicates("file")
    return copies.drop(columns="rank").reset_index(drop=True)  # each other image once, its closest match


def copies_record(copies: pd.DataFrame, near_bits: int) -> dict:
    """For metrics.json: the other data's images that repeat the run's, per kind and per run split, with
    a few examples per split to look at."""
    in_split = {s: copies[copies["split"] == s] for s in SPLITS if (copies["split"] == s).any()}
    return {
        "near_duplicate_bits": near_bits,
        "by_kind": {kind: int((copies["kind"] == kind).sum()) for kind in COPY_KINDS},
        "by_split": {s: len(rows) for s, rows in in_split.items()},
        "examples": {
            s: rows.head(EXAMPLES)[["file", "run_file", "kind", "distance"]].to_dict("records")
            for s, rows in in_split.items()
        },
    }


def copies_summary(record: dict) -> str:
    """One log phrase: per split, then per kind (DICOM instances only when there are any), with one
    example."""
    per_split = ", ".join(f"{s} {n}" for s, n in record["by_split"].items())
    kinds = record["by_kind"]
    uids = kinds["sop_instance_uid"]
    same_instance = f"{uids} the same DICOM instance (SOPInstanceUID), " if uids else ""
    split, (first, *_) = next(iter(record["examples"].items()))
    return (f"{per_split}; {kinds['file']} byte-identical, {kinds['exact']} the same pixels, {same_instance}"
            f"{kinds['near']} re-encoded or resized (at most {record['near_duplicate_bits']} of {HASH_BITS} "
            f"hash bits apart); e.g. {first['file']} repeats {split} {first['run_file']}")


def check_site_name(name: object) -> None:
    """`name` is a folder under <run>/external/: `../../x` wrote beside the run's backbone folders, where
    the next report listed it as a broken run."""
    if name is not None and (str(name) in ("", ".", "..") or Path(str(name)).name != str(name)):
        raise BenchmarkError(f"name={name} must be a plain folder name (no / or ..): e.g. name=siteB")


def score(cfg: DictConfig, overrides: list[str]) -> Path:
    """Score the run on the other data; the folder written."""
    check_site_name(cfg.name)
    run_dir = cli.require_model_run(cfg.run)
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    metrics = read_json(run_dir / "metrics.json")
    dataset_cfg = external_dataset(run_cfg, overrides)
    other = load_dataset(dataset_cfg, Path(run_cfg.data_dir), Path(run_cfg.cache_dir))
    to_run = class_map(list(metrics["classes"]), other)
    near_bits = int(other.records["audit"]["near_duplicate_bits"])  # the threshold the data audit used
    copies = copies_of_run_images(run_dir, run_cfg, dataset_cfg, other, near_bits)
    repeated = None if copies is None else len(copies)
    record = None if copies is None else copies_record(copies, near_bits)
    if repeated:
        log.warning("%d of the other data's %d images are the run's own images (%s): they are not external "
                    "evidence; remove them from %s", repeated, len(other.file_hashes), copies_summary(record),
                    dataset_cfg.get("path"))
    size = int(metrics["image_size"])
    pixels = np.concatenate([split_pixels(other, s, size, Path(run_cfg.cache_dir)) for s in SPLITS])
    labels = to_run[np.concatenate([other.splits[s].labels for s in SPLITS])]
    ids = [image_id for s in SPLITS for image_id in other.splits[s].ids]
    groups = [g for s in SPLITS for g in other.splits[s].groups] if other.group_name else None
    if groups is None and (unit := metrics.get("split_by") or "image") != "image":
        log.warning("the run was split by %s, but this site's images are scored one by one: where a %s has "
                    "several, its intervals treat them as independent evidence (too narrow); give its "
                    "grouping (dataset.groups, dataset.group_pattern or dataset.group_depth)", unit, unit)
    model = cli.load_model(run_dir)
    probabilities = model.predict(pixels.astype(np.float32), batch_size=cfg.batch_size, verbose=0)
    classes = list(metrics["classes"])
    scores = evaluate(labels, probabilities, classes, Settings.from_config(run_cfg.evaluate), groups=groups)
    name = cfg.name or dataset_name(dataset_cfg)
    if scores["absent_classes"]:
        log.warning("no images of class(es) %s at %s: macro averages over classes (macro-AUROC, macro-F1) "
                    "are undefined there; accuracy and the per-class metrics of the others are in "
                    "metrics.json", ", ".join(scores["absent_classes"]), name)
    folder = run_dir / EXTERNAL / str(name)
    write_json(folder / "metrics.json", {
        "site": str(name),
        "dataset": dataset_name(dataset_cfg),
        "dataset_fingerprint": other.fingerprint,
        "synthetic_data": other.synthetic,
        "split_by": other.group_name or "image",
        "dataset_config": OmegaConf.to_container(dataset_cfg, resolve=True),
        "images_in_run_data": repeated,
        "run_data_copies": record,
        **scores,
    })
    write_text(folder / "predictions.csv",
               predictions_frame(ids, probabilities, classes, labels=labels).to_csv(index=False))
    log.info("%s on %s (%d images): accuracy %s (internal %s), macro-AUROC %s (internal %s) -> %s",
             metrics["backbone"], name, len(labels), with_interval(scores, "accuracy", 4),
             with_interval(metrics, "accuracy", 4), with_interval(scores, "macro_auroc", 4),
             with_interval(metrics, "macro_auroc", 4), folder)
    return folder


if __name__ == "__main__":
    argv = sys.argv[1:]
    is_data = [arg.split("=", 1)[0].lstrip("+").split(".")[0] == "dataset" for arg in argv]
    own = [arg for arg, data in zip(argv, is_data, strict=True) if not data]
    data = [arg for arg, data in zip(argv, is_data, strict=True) if data]
    cli.main("evaluate", lambda cfg: score(cfg, data), own,
             more=", and the other data's dataset=<name> and dataset.* (as python -m benchmark takes them)")
