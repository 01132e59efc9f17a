"""Image-folder datasets: `train/ test/ [val/]` each with class folders, or class folders directly."""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark.data.dataset import SPLITS, Split
from benchmark.data.groups import assign_groups
from benchmark.data.images import IMAGE_KINDS, images_below, is_listed_folder
from benchmark.data.splits import group_split_off, is_test_only, split_off, three_way
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)


def list_class_images(directory: Path, root: Path) -> dict[str, list[str]]:
    """Class folder name -> sorted image paths relative to `root` (nested sub-folders allowed)."""
    classes: dict[str, list[str]] = {}
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir() and is_listed_folder(p.name)):
        files = [str(p.relative_to(root)) for p in images_below(class_dir)]
        if not files:
            raise BenchmarkError(
                f"class folder {class_dir} has no images ({IMAGE_KINDS}): add images to it, or remove the "
                "class (its folder in every split)"
            )
        classes[class_dir.name] = files
    return classes


def as_split(
    classes: dict[str, list[str]], class_names: list[str], groups: dict[str, str] | None = None
) -> Split:
    ids = [f for name in class_names for f in classes.get(name, [])]
    labels = [class_names.index(name) for name in class_names for _ in classes.get(name, [])]
    found = None if groups is None else tuple(groups[i] for i in ids)
    return Split(ids=tuple(ids), labels=np.asarray(labels, dtype=np.int64), groups=found)


Usable = Callable[[list[str]], Sequence[str]]


def keep_usable(listings: dict[str, dict[str, list[str]]], root: Path, usable: Usable | None) -> None:
    """Drop (in place) the ids `usable` does not return; it sees every listed id once, in listing order."""
    if usable is None:
        return
    everything = [f for classes in listings.values() for files in classes.values() for f in files]
    kept = set(usable(everything))
    for folder, classes in listings.items():
        for name, files in classes.items():
            classes[name] = [f for f in files if f in kept]
            if not classes[name]:
                where = root / folder / name if folder else root / name
                raise BenchmarkError(
                    f"class folder {where} has no usable images (all {len(files)} were dropped as "
                    "unreadable, see the log): fix or replace them, or remove the folder"
                )


def group_map(listings: dict[str, dict[str, list[str]]], cfg: DictConfig, root: Path, class_level: int):
    """id -> group for every listed id, or None when no group key is set."""
    ids = [f for classes in listings.values() for files in classes.values() for f in files]
    groups = assign_groups(ids, cfg, root, class_level)
    return None if groups is None else dict(zip(ids, groups, strict=True))


def check_group_overlap(splits: dict[str, Split], cfg: DictConfig) -> None:
    """Pre-split folders: a group (patient) in two splits leaks it; an error, or a warning if asked."""
    mode = str(cfg.get("group_overlap") or "error")
    if mode not in ("error", "warn"):
        raise BenchmarkError(f"dataset.group_overlap={mode!r} is unknown: use error or warn")
    where: dict[str, dict[str, list[str]]] = {}
    for split_name, split in splits.items():
        for image_id, group in zip(split.ids, split.groups, strict=True):
            where.setdefault(group, {}).setdefault(split_name, []).append(image_id)
    shared = {g: found for g, found in where.items() if len(found) > 1}
    if not shared:
        return
    examples = []
    for group, found in list(shared.items())[:3]:
        files = ", ".join(files[0] for files in found.values())
        examples.append(f"{group!r} in {'+'.join(found)} ({files})")
    message = (
        f"{len(shared)} group(s) appear in more than one split folder, e.g. {'; '.join(examples)}: "
        "move each group's images into one split, fix the group key"
    )
    if mode == "error":
        raise BenchmarkError(f"{message}, or set dataset.group_overlap=warn")
    log.warning("dataset: %s (kept: dataset.group_overlap=warn; the leaderboard says so)", message)


def load_presplit(
    root: Path, cfg: DictConfig, usable: Usable | None = None
) -> tuple[list[str], dict[str, Split]]:
    """The seed papers' layout; a missing val/ becomes a stratified `val_fraction` of train (of its
    groups, when the images have groups)."""
    listings = {"train": list_class_images(root / "train", root)}
    class_names = sorted(listings["train"])
    if len(class_names) < 2:
        raise BenchmarkError(
            f"{root / 'train'} has {len(class_names)} class folder(s) with images: a classifier needs 2+"
        )
    for name in ("val", "test"):
        if not (root / name).is_dir():
            continue
        found = split_listing(root, name)
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            by_case = {c.casefold(): c for c in class_names}
            cased = [f"{u} (train/ has {by_case[u.casefold()]})" for u in unknown if u.casefold() in by_case]
            hint = f"; differ in case only: {', '.join(cased)}, rename one of each" if cased else ""
            raise BenchmarkError(f"{root / name} has class folders {unknown} that train/ lacks: the class "
                                 f"lists must match{hint}")
        missing = [c for c in class_names if c not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise BenchmarkError(
                f"{name}/ has no images of class '{missing[0]}'{more}: every class needs {name} images "
                f"to be scored; add {root / name / missing[0]}/ or remove the class"
            )
        listings[name] = found
    keep_usable(listings, root, usable)
    groups = group_map(listings, cfg, root, class_level=1)
    splits = {name: as_split(found, class_names, groups) for name, found in listings.items()}
    if groups is not None:
        check_group_overlap(splits, cfg)
    if "val" not in splits:
        train = splits["train"]
        if train.groups is None:
            kept, val = split_off(train.labels, cfg.val_fraction, cfg.split_seed, "val", class_names)
        else:
            kept, val = group_split_off(
                train.labels, train.groups, cfg.val_fraction, cfg.split_seed, "val", class_names
            )
        splits["val"], splits["train"] = train.subset(val), train.subset(kept)
    return class_names, splits


def split_listing(root: Path, name: str) -> dict[str, list[str]]:
    """A split folder's class listing (`list_class_images`); a split folder without any is an error."""
    if not (found := list_class_images(root / name, root)):
        raise BenchmarkError(f"{root / name} has no class folders with images: fill it or remove it")
    return found


def load_presplit_scored(
    root: Path, cfg: DictConfig, usable: Usable | None = None
) -> tuple[list[str], dict[str, Split]]:
    """Another site's train/ [val/] test/ folders scored as one set (dataset.split=[0,0,1], as
    benchmark.evaluate loads it): every image in test. Their own split plays no part, so their class lists
    may differ (the classes are all of them) and a patient may sit in two."""
    listings = {name: split_listing(root, name) for name in SPLITS if (root / name).is_dir()}
    class_names = sorted({name for found in listings.values() for name in found})
    keep_usable(listings, root, usable)
    groups = group_map(listings, cfg, root, class_level=1)
    merged = {c: [f for found in listings.values() for f in found.get(c, [])] for c in class_names}
    nothing = as_split({}, class_names, groups)
    return class_names, {"train": nothing, "val": nothing, "test": as_split(merged, class_names, groups)}


def load_class_folders(
    root: Path, cfg: DictConfig, usable: Usable | None = None, least: int = 2
) -> tuple[list[str], dict[str, Split]]:
    """Class folders directly under the root: a stratified train/val/test split by `dataset.split`
    (whole groups per split when the images have groups)."""
    found = list_class_images(root, root)
    if len(found) < least:
        raise BenchmarkError(
            f"{root} has {len(found)} class folder(s) with images: a classifier needs at least 2 "
            "(expected <path>/<class>/*.png or <path>/train/<class>/ + <path>/test/<class>/)"
        )
    class_names = sorted(found)
    listings = {"": found}
    keep_usable(listings, root, usable)
    everything = as_split(found, class_names, group_map(listings, cfg, root, class_level=0))
    indices = three_way(everything.labels, everything.groups, cfg.split, cfg.split_seed, class_names)
    return class_names, {name: everything.subset(idx) for name, idx in indices.items()}


def check_root(root: Path) -> None:
    if not root.is_dir():
        raise BenchmarkError(f"dataset.path={root} is not a folder: point dataset.path at your image folder")


def is_presplit(root: Path) -> bool:
    """The seed papers' layout, train/ test/ [val/] with class folders: the user's own split."""
    return (root / "train").is_dir() and (root / "test").is_dir()


def load_folder(
    root: Path, cfg: DictConfig, usable: Usable | None = None
) -> tuple[list[str], dict[str, Split]]:
    """Detect the layout and return the class names and the three splits.

    `usable`, when given, sees every listed image id once (relative paths, listing order) before any
    group or split is decided and returns the ids to keep (the caller drops unreadable files with it).
    Splits carry `groups` when a group key (dataset.groups / group_pattern / group_depth) is set.
    """
    check_root(root)
    scored = is_test_only(cfg.get("split") or ())  # data only scored: benchmark.evaluate's other site
    if is_presplit(root):
        found = "train/, val/ and test/" if (root / "val").is_dir() else "train/ and test/ (no val/)"
        use = "every image scored, their split aside" if scored else "using them as the split"
        log.info("dataset %s: %s folders found, %s", root, found, use)
        return (load_presplit_scored if scored else load_presplit)(root, cfg, usable)
    if (root / "train").is_dir() or (root / "test").is_dir():
        raise BenchmarkError(f"{root} has only one of train/ and test/: provide both, or only class folders")
    # a site that is only scored may hold one class (only normal scans: that class is measured, the rest
    # undefined); a classifier to train needs two
    return load_class_folders(root, cfg, usable, least=1 if scored else 2)
