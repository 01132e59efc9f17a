"""`python -m benchmark.evaluate run=<run dir> dataset=folder dataset.path=<other site> [name=siteB]`.

External validation: a finished run scored on data from elsewhere, with the run's own model, image size,
decoding and preprocessing, every image of the other data counted (its split fractions do not matter),
classes matched by name. Writes <run>/external/<name>/metrics.json (the full metric set with intervals,
patient-grouped when the other data has groups) and predictions.csv; the report shows internal against
external per run.
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
from benchmark.data.pixels import split_pixels
from benchmark.data.splits import TEST_ONLY
from benchmark.errors import BenchmarkError
from benchmark.files import file_sha256, read_json, write_json, write_text
from benchmark.metrics.evaluate import Settings, evaluate
from benchmark.metrics.predictions import predictions_frame

log = logging.getLogger(__name__)
DECODING = ("window", "intensity", "resize")  # follow the run unless the command line sets them


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


def images_in_run_data(run_dir: Path, run_cfg: DictConfig, other: Dataset) -> int | None:
    """How many of the other data's images are byte-identical to a file the run was trained, validated or
    tested on (its splits.csv, hashed where they lie): a "site" that repeats them is not external
    evidence. None when the run's files are arrays or gone."""
    root = files_root(run_cfg.dataset, Path(run_cfg.data_dir))
    try:
        files = pd.read_csv(run_dir / "splits.csv", usecols=["file"], dtype=str)["file"]
        own = {file_sha256(root / name) for name in files} if root is not None else None
    except (OSError, ValueError) as error:
        log.warning("the run's own files could not be read (%s): overlap with them not checked", error)
        return None
    return None if own is None else sum(digest in own for digest in other.file_hashes.values())


def score(cfg: DictConfig, overrides: list[str]) -> Path:
    """Score the run on the other data; the folder written."""
    run_dir = cli.require_model_run(cfg.run)
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    metrics = read_json(run_dir / "metrics.json")
    dataset_cfg = external_dataset(run_cfg, overrides)
    other = load_dataset(dataset_cfg, Path(run_cfg.data_dir), Path(run_cfg.cache_dir))
    to_run = class_map(list(metrics["classes"]), other)
    repeated = images_in_run_data(run_dir, run_cfg, other)
    if repeated:
        log.warning("%d of the other data's %d images are files of the run's own data: they are not "
                    "external evidence; remove them from %s", repeated, len(other.file_hashes),
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
