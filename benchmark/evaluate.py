"""`python -m benchmark.evaluate run=<run dir> dataset=folder dataset.path=<other site> [name=siteB]`.

External validation: a finished run scored on data from elsewhere, with the run's own model, image size,
decoding and preprocessing, every image of the other data counted (its split fractions do not matter),
classes matched by name. Writes <run>/external/<name>/metrics.json (the full metric set with intervals,
patient-grouped when the other data has groups) and predictions.csv; the report shows internal against
external per run. Images of the other data that are the run's own (copied, re-encoded or resized: the
leakage audit's hashes) are counted per run split and warned of: they are not external evidence.
"""

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.data import SPLITS, Dataset, dataset_name, files_root, load_dataset
from benchmark.data.audit import find_duplicates
from benchmark.data.dataset import Split
from benchmark.data.images import DecodeOptions
from benchmark.data.pixels import split_pixels
from benchmark.data.scan import HASH_BITS, ScanRecord, scan_files
from benchmark.data.splits import TEST_ONLY
from benchmark.errors import BenchmarkError
from benchmark.files import file_sha256, read_json, write_json, write_text
from benchmark.metrics.evaluate import Settings, evaluate
from benchmark.metrics.predictions import predictions_frame

log = logging.getLogger(__name__)
DECODING = ("window", "intensity", "resize")  # follow the run unless the command line sets them
EXTERNAL = "external"  # the other data's split name when it is audited with the run's images
COPY_KINDS = ("file", "exact", "near")  # how an other-data image repeats a run image, closest first
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


def audited_together(own: pd.DataFrame, own_records: dict[str, ScanRecord], other_ids: list[str],
                     other_records: dict[str, ScanRecord], near_bits: int) -> pd.DataFrame:
    """The data audit's exact (same decoded pixels) and near (perceptual hash) pairs between a run image
    and an other-data image, as (split, run_file, file, kind, distance): the other data is audited as
    one more split, ranked after the run's, so a re-encoded or resized training image is caught as the
    run's own audit would catch it. Ids are keyed by split: both sides may use the same file names."""
    splits = {name: Split(tuple(f"{name}/{f}" for f in group["file"]), np.zeros(len(group), int))
              for name, group in own.groupby("split", sort=False)}
    splits[EXTERNAL] = Split(tuple(f"{EXTERNAL}/{i}" for i in other_ids), np.zeros(len(other_ids), int))
    records = {f"{s}/{f}": own_records[f] for s, f in zip(own["split"], own["file"], strict=True)}
    records.update({f"{EXTERNAL}/{i}": other_records[i] for i in other_ids})
    pairs = find_duplicates(splits, records, near_bits)
    pairs = pairs[pairs["kind"].isin(("exact", "near")) & (pairs["split_a"] != EXTERNAL)
                  & (pairs["split_b"] == EXTERNAL)]
    return pd.DataFrame({
        "split": pairs["split_a"],
        "run_file": pairs["file_a"].str.split("/", n=1).str[1],
        "file": pairs["file_b"].str.split("/", n=1).str[1],
        "kind": pairs["kind"],
        "distance": pairs["distance"].astype(int),
    })


def copies_of_run_images(
    run_dir: Path, run_cfg: DictConfig, other_cfg: DictConfig, other: Dataset, near_bits: int
) -> pd.DataFrame | None:
    """Each image of the other data that is one of the run's training, validation or test images, with
    the run image it repeats: byte-identical files ("file"), the same decoded pixels ("exact") or a
    perceptual hash at most `near_bits` apart ("near": a PNG re-saved as JPEG, resized, re-exported).
    A "site" that repeats them is not external evidence. The run's files are decoded where they lie
    (their scan records come from the cache the run filled, when it is still there). None when either
    side's images are arrays, not files, or the run's files are gone."""
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
    other_records = scan_files(other_root, other_ids, other.file_hashes, DecodeOptions.from_config(other_cfg),
                               cache_dir)
    split_of = dict(zip(own["file"], own["split"], strict=True))
    run_file_of = {digest: name for name, digest in own_hashes.items()}
    same_bytes = pd.DataFrame(
        [(split_of[run_file_of[other.file_hashes[i]]], run_file_of[other.file_hashes[i]], i, "file", 0)
         for i in other_ids if other.file_hashes.get(i) in run_file_of],
        columns=["split", "run_file", "file", "kind", "distance"],
    )
    looks_same = audited_together(own, own_records, other_ids, other_records, near_bits)
    copies = pd.concat([same_bytes, looks_same], ignore_index=True)
    copies["rank"] = copies["kind"].map({kind: k for k, kind in enumerate(COPY_KINDS)})
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
    """One log phrase: per split, then per kind, with one example."""
    per_split = ", ".join(f"{s} {n}" for s, n in record["by_split"].items())
    kinds = record["by_kind"]
    split, (first, *_) = next(iter(record["examples"].items()))
    return (f"{per_split}; {kinds['file']} byte-identical, {kinds['exact']} the same pixels, "
            f"{kinds['near']} re-encoded or resized (at most {record['near_duplicate_bits']} of {HASH_BITS} "
            f"hash bits apart); e.g. {first['file']} repeats {split} {first['run_file']}")


def score(cfg: DictConfig, overrides: list[str]) -> Path:
    """Score the run on the other data; the folder written."""
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
    model = cli.load_model(run_dir)
    probabilities = model.predict(pixels.astype(np.float32), batch_size=cfg.batch_size, verbose=0)
    classes = list(metrics["classes"])
    absent = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if absent:
        log.warning("no images of class(es) %s at %s: macro averages over classes (macro-AUROC, macro-F1) "
                    "are undefined there; accuracy and the per-class metrics of the others are in "
                    "metrics.json", ", ".join(absent), cfg.name or dataset_name(dataset_cfg))
    scores = evaluate(labels, probabilities, classes, Settings.from_config(run_cfg.evaluate), groups=groups)
    name = cfg.name or dataset_name(dataset_cfg)
    folder = run_dir / "external" / str(name)
    write_json(folder / "metrics.json", {
        "site": str(name),
        "dataset": dataset_name(dataset_cfg),
        "dataset_fingerprint": other.fingerprint,
        "synthetic_data": other.synthetic,
        "split_by": other.group_name or "image",
        "dataset_config": OmegaConf.to_container(dataset_cfg, resolve=True),
        "absent_classes": absent,
        "images_in_run_data": repeated,
        "run_data_copies": record,
        **scores,
    })
    write_text(folder / "predictions.csv",
               predictions_frame(ids, probabilities, classes, labels=labels).to_csv(index=False))
    log.info("%s on %s (%d images): accuracy %.4f (internal %.4f), macro-AUROC %.4f (internal %.4f) -> %s",
             metrics["backbone"], name, len(labels), scores["accuracy"], metrics["accuracy"],
             scores["macro_auroc"], metrics["macro_auroc"], folder)
    return folder


if __name__ == "__main__":
    argv = sys.argv[1:]
    is_data = [arg.split("=", 1)[0].lstrip("+").split(".")[0] == "dataset" for arg in argv]
    own = [arg for arg, data in zip(argv, is_data, strict=True) if not data]
    data = [arg for arg, data in zip(argv, is_data, strict=True) if data]
    cli.main("evaluate", lambda cfg: score(cfg, data), own)
