"""Image-folder datasets: `train/ test/ [val/]` each with class folders, or class folders directly."""

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark.data.dataset import Split
from benchmark.data.images import IMAGE_SUFFIXES
from benchmark.data.splits import split_off, stratified_three_way
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)


def list_class_images(directory: Path, root: Path) -> dict[str, list[str]]:
    """Class folder name -> sorted image paths relative to `root` (nested sub-folders allowed)."""
    classes: dict[str, list[str]] = {}
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            str(p.relative_to(root))
            for p in class_dir.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise BenchmarkError(
                f"class folder {class_dir} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                "add images or remove the folder"
            )
        classes[class_dir.name] = files
    return classes


def as_split(classes: dict[str, list[str]], class_names: list[str]) -> Split:
    ids = [f for name in class_names for f in classes.get(name, [])]
    labels = [class_names.index(name) for name in class_names for _ in classes.get(name, [])]
    return Split(ids=tuple(ids), labels=np.asarray(labels, dtype=np.int64))


def subset(split: Split, indices: np.ndarray) -> Split:
    return Split(ids=tuple(split.ids[i] for i in indices), labels=split.labels[indices])


def load_presplit(root: Path, cfg: DictConfig) -> tuple[list[str], dict[str, Split]]:
    """The seed papers' layout; a missing val/ becomes a stratified `val_fraction` of train."""
    train = list_class_images(root / "train", root)
    class_names = sorted(train)
    if len(class_names) < 2:
        raise BenchmarkError(
            f"{root / 'train'} has {len(class_names)} class folder(s) with images: a classifier needs 2+"
        )
    splits = {"train": as_split(train, class_names)}
    for name in ("val", "test"):
        if not (root / name).is_dir():
            continue
        found = list_class_images(root / name, root)
        if not found:
            raise BenchmarkError(f"{root / name} has no class folders with images: fill it or remove it")
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise BenchmarkError(
                f"{root / name} has class folders {unknown} that train/ lacks: the class lists must match"
            )
        splits[name] = as_split(found, class_names)
    if "val" not in splits:
        kept, val = split_off(splits["train"].labels, cfg.val_fraction, cfg.split_seed, "val")
        splits["val"], splits["train"] = subset(splits["train"], val), subset(splits["train"], kept)
    return class_names, splits


def load_class_folders(root: Path, cfg: DictConfig) -> tuple[list[str], dict[str, Split]]:
    """Class folders directly under the root: a stratified train/val/test split by `dataset.split`."""
    found = list_class_images(root, root)
    if len(found) < 2:
        raise BenchmarkError(
            f"{root} has {len(found)} class folder(s) with images: a classifier needs at least 2 "
            "(expected <path>/<class>/*.png or <path>/train/<class>/ + <path>/test/<class>/)"
        )
    class_names = sorted(found)
    everything = as_split(found, class_names)
    indices = stratified_three_way(everything.labels, cfg.split, cfg.split_seed)
    return class_names, {name: subset(everything, idx) for name, idx in indices.items()}


def load_folder(root: Path, cfg: DictConfig) -> tuple[list[str], dict[str, Split]]:
    """Detect the layout and return the class names and the three splits."""
    if not root.is_dir():
        raise BenchmarkError(f"dataset.path={root} is not a folder: point dataset.path at your image folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        log.info("dataset %s: train/ and test/ folders found, using them as the split", root)
        return load_presplit(root, cfg)
    if (root / "train").is_dir() or (root / "test").is_dir():
        raise BenchmarkError(f"{root} has only one of train/ and test/: provide both, or only class folders")
    return load_class_folders(root, cfg)
