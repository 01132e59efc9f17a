"""Stratified, seeded splits: the same dataset and split_seed always give the same test set.

Without groups every image is split on its own (`split_off`, `stratified_three_way`); with groups
(patients, studies, sites) whole groups are split (`group_split_off`, `grouped_three_way`).
"""

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)


TEST_ONLY = (0.0, 0.0, 1.0)  # dataset.split of data that is only scored (external validation): all test


def is_test_only(fractions: Sequence[float]) -> bool:
    return len(fractions) == 3 and tuple(float(f) for f in fractions) == TEST_ONLY


def three_way(
    labels: np.ndarray,
    groups: Sequence[str] | None,
    fractions: Sequence[float],
    seed: int,
    class_names: Sequence[str],
) -> dict[str, np.ndarray]:
    """The train/val/test indices: whole groups per split when there are groups; everything in test for
    data that is only scored, however few images a class has. `class_names` name labels in messages."""
    if is_test_only(fractions):
        empty = np.array([], dtype=int)
        return {"train": empty, "val": empty, "test": np.arange(len(labels))}
    if groups is None:
        return stratified_three_way(labels, fractions, seed, class_names)
    return grouped_three_way(labels, groups, fractions, seed, class_names)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise BenchmarkError(
            f"dataset.split={list(fractions)} must be three positive train/val/test fractions summing to 1, "
            "e.g. dataset.split=[0.7,0.1,0.2]"
        )
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def quoted(labels: Sequence[int], class_names: Sequence[str]) -> str:
    """Labels as the user knows them: 'tumor', 'cyst'."""
    return ", ".join(repr(class_names[int(label)]) for label in labels)


def check_per_class(labels: np.ndarray, class_names: Sequence[str], what: str, least: int = 2) -> None:
    """Every class takes `least` images: 2 to split one set off (sklearn refuses to stratify a class of one
    image and names it by index), 3 for train, val and test; say which and what to do."""
    counts = np.bincount(labels, minlength=len(class_names))
    few = np.flatnonzero((counts > 0) & (counts < least))
    if not len(few):
        return
    left = " left to split" if least == 2 else ""
    if len(few) == 1:
        images = "1 image" if counts[few[0]] == 1 else f"{counts[few[0]]} images"
        subject = f"class {quoted(few, class_names)} has only {images}{left}"
    else:
        subject = "classes " + ", ".join(f"{quoted([k], class_names)} ({counts[k]})" for k in few) + \
            f" have fewer than {least} images{left}"
    raise BenchmarkError(
        f"cannot split off a stratified {what} set: {subject}, and it needs at least {least} of each class: "
        f"add images of {quoted(few, class_names)}, leave the class out, or provide the split as train/ "
        "val/ test/ folders (each with a folder per class)"
    )


def split_off(
    labels: np.ndarray, fraction: float, seed: int, what: str, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, split-off) with `fraction` of each class split off."""
    check_per_class(labels, class_names, what)
    indices = np.arange(len(labels))
    count = max(1, round(len(labels) * fraction))  # a count: float fractions like 0.1/0.8 round up in sklearn
    try:
        kept, taken = train_test_split(indices, test_size=count, stratify=labels, random_state=seed)
    except ValueError as error:
        counts = dict(zip(class_names, np.bincount(labels, minlength=len(class_names)).tolist(), strict=True))
        raise BenchmarkError(
            f"cannot split off a stratified {what} set ({error}); images per class: {counts}: "
            "add images to the small classes or provide the split as folders"
        ) from None
    kept, taken = every_class_on_both_sides(labels, kept, taken, seed)
    return np.sort(kept), np.sort(taken)


def every_class_on_both_sides(
    labels: np.ndarray, kept: np.ndarray, taken: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """sklearn rounds each class's share of a side, and a class of a few images can round to none (3 images,
    a val share of 1/8: 0 in val, so early stopping and the thresholds never saw it). Such a class gets one
    image moved across, and the side gives back one image of its largest class: sizes stay as asked.
    sklearn refuses a side smaller than the number of classes, so a side missing a class always has one
    with two images to give back; a class of one image is refused before (`check_per_class`)."""
    rng = np.random.default_rng(seed)
    sides = [list(kept), list(taken)]
    for label in np.flatnonzero(np.bincount(labels) >= 2):
        for short, full in ((1, 0), (0, 1)):
            counts = np.bincount(labels[sides[short]], minlength=labels.max() + 1)
            if counts[label]:
                continue
            donor = np.argmax(counts)
            moved = rng.choice([i for i in sides[full] if labels[i] == label])
            back = rng.choice([i for i in sides[short] if labels[i] == donor])
            sides[full].remove(moved)
            sides[short].remove(back)
            sides[short].append(moved)
            sides[full].append(back)
    return np.asarray(sides[0], dtype=int), np.asarray(sides[1], dtype=int)


def stratified_three_way(
    labels: np.ndarray, fractions: Sequence[float], seed: int, class_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """train/val/test index arrays in the given proportions, each class represented in each split."""
    train_fraction, val_fraction, test_fraction = check_fractions(fractions)
    # 2 images of a class went to train alone (none to val, none to test): every metric of it undefined
    check_per_class(labels, class_names, "train/val/test", least=3)
    rest, test = split_off(labels, test_fraction, seed, "test", class_names)
    val_share = val_fraction / (train_fraction + val_fraction)
    train, val = split_off(labels[rest], val_share, seed, "val", class_names)
    return {"train": rest[train], "val": rest[val], "test": test}


def group_split_off(
    labels: np.ndarray,
    groups: Sequence[str],
    fraction: float,
    seed: int,
    what: str,
    class_names: Sequence[str],
    then_split: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, split-off) with about `fraction` of the images split off, whole groups only.

    One fold of sklearn's StratifiedGroupKFold (n_splits = round(1/fraction), shuffled by `seed`): no
    group lands on both sides, and the class mix is kept as far as the groups allow. Which fold is
    `best_fold`'s choice: sklearn's first fold, unless it leaves a class out of a side although another
    fold of the same seed would have given it one of the class's groups. `then_split`: the fraction the
    kept side is split by next (val off the rest after test); a fold whose rest cannot be is avoided.
    """
    if not 0 < fraction < 1:
        raise BenchmarkError(f"the {what} fraction {fraction} must lie between 0 and 1")
    n_splits = fold_count(fraction)
    labels = np.asarray(labels)
    group_array = np.asarray(groups)
    n_groups = len(np.unique(group_array))
    if n_groups < n_splits:
        raise BenchmarkError(
            f"cannot split off a {what} set of {fraction:.0%} by group: that takes 1 of {n_splits} "
            f"group folds, so at least {n_splits} groups, but the {len(labels)} images have only {n_groups} "
            "group(s): add patients, check the group key (dataset.groups / group_pattern / group_depth), "
            "or provide the split as train/ val/ test/ folders"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            folds = list(splitter.split(np.zeros(len(labels)), labels, group_array))
        except ValueError as error:  # e.g. every class has fewer images than there are folds
            raise BenchmarkError(
                f"cannot split off a {what} set of {fraction:.0%} by group ({error}): add patients, or "
                "provide the split as train/ val/ test/ folders"
            ) from None
    usable = (lambda kept: splittable(labels[kept], group_array[kept], then_split)) if then_split else None
    kept, taken = best_fold(folds, labels, fraction, usable)
    for side, rows in ((what, taken), (f"the rest after the {what} set", kept)):
        missing = sorted(set(labels.tolist()) - set(labels[rows].tolist()))
        if missing:
            log.warning(
                "group-aware split: %s has no images of %s %s (too few groups: no fold of the %d groups "
                "of the %d images being split into %d puts every class on both sides; among them %s %s)",
                side,
                "class" if len(missing) == 1 else "classes",
                quoted(missing, class_names),
                n_groups,
                len(labels),
                n_splits,
                "that class has" if len(missing) == 1 else "those classes have",
                ", ".join(f"{len(set(group_array[labels == label]))} group(s)" for label in missing),
            )
    return np.sort(kept), np.sort(taken)


def missing_classes(labels: np.ndarray, kept: np.ndarray, taken: np.ndarray) -> int:
    """How many (side, class) pairs have no image: 0 when every class is on both sides of the fold."""
    present = np.unique(labels)
    return sum(len(np.setdiff1d(present, labels[side])) for side in (kept, taken))


def fold_count(fraction: float) -> int:
    return max(2, round(1 / fraction))


def splittable(labels: np.ndarray, groups: np.ndarray, fraction: float) -> bool:
    """Whether sklearn's StratifiedGroupKFold can split these images again by `fraction`: at least as
    many groups as folds, and some class with at least as many images as folds."""
    folds = fold_count(fraction)
    return len(np.unique(groups)) >= folds and np.bincount(labels).max() >= folds


def best_fold(
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    fraction: float,
    usable: Callable[[np.ndarray], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The (kept, taken) fold whose kept side can be split next (`usable`), then with the fewest classes
    missing from either side; of those sklearn's first fold when it is one, else the one whose split-off
    share is closest to `fraction`, then the earliest. A class missing from test cannot be scored at
    all, so coverage comes before size; but where the first fold covers every class it stays, because
    the split, and with it the data fingerprint every run, cache and study name depends on, is then the
    one earlier versions made."""

    def cost(k: int) -> tuple[bool, int, bool, float, int]:
        kept, taken = folds[k]
        cannot_split = usable is not None and not usable(kept)
        return (cannot_split, missing_classes(labels, kept, taken), k != 0,
                abs(len(taken) / len(labels) - fraction), k)

    return folds[min(range(len(folds)), key=cost)]


def grouped_three_way(
    labels: np.ndarray,
    groups: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    class_names: Sequence[str],
) -> dict[str, np.ndarray]:
    """train/val/test index arrays, about the given proportions, no group in two splits."""
    train_fraction, val_fraction, test_fraction = check_fractions(fractions)
    groups = tuple(groups)
    val_share = val_fraction / (train_fraction + val_fraction)
    rest, test = group_split_off(labels, groups, test_fraction, seed, "test", class_names, val_share)
    train, val = group_split_off(labels[rest], [groups[i] for i in rest], val_share, seed, "val", class_names)
    return {"train": rest[train], "val": rest[val], "test": test}
