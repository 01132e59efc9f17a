"""Resampling the test set: stratified by class, by patient group when there are groups, and seeded, so
every row of a dataset is scored on the same resamples and comparisons between rows are paired.

A resample is returned as case weights (how often each test case was drawn): `weighted.py` scores a
whole (B, n) weight matrix at once. Stratifying by class keeps every class in every resample, so
class-conditional metrics (sensitivity, AUROC, macro-F1) are defined in all of them; with groups
(patients, studies, sites) whole groups are drawn, since slices of one patient are not independent.
"""

import numpy as np


def _members(codes: np.ndarray, n_codes: int) -> list[np.ndarray]:
    """Row indices of each code 0..n_codes-1, in row order."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=n_codes))[:-1])


def _group_strata(classes: np.ndarray, group_codes: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """The stratum of each group: its majority class (ties: the lowest class), then repaired.

    A class is sure to be present in every resample when some stratum holds only groups that contain it
    (each stratum draws at least one of its groups). Every group of a majority-class stratum contains
    that class; a class that is nobody's majority gets, if it is not already sure (through a one-group
    stratum containing it), its own stratum: the group with most of its rows among those in strata of two
    or more groups. Taking a group out of such a stratum leaves its other groups, so no class loses its
    guarantee.
    """
    counts = np.zeros((n_groups, n_classes), dtype=int)
    np.add.at(counts, (group_codes, classes), 1)
    strata = counts.argmax(axis=1)
    next_stratum = n_classes
    for k in range(n_classes):
        has_k = counts[:, k] > 0
        if not has_k.any():
            continue
        if any(np.all(has_k[strata == s]) for s in np.unique(strata[has_k])):
            continue
        sizes = np.bincount(strata)
        movable = np.flatnonzero(has_k & (sizes[strata] >= 2))
        chosen = movable[np.argmax(counts[movable, k])]
        strata[chosen] = next_stratum
        next_stratum += 1
    return strata


def stratified_indices(
    labels: np.ndarray, n_resamples: int, seed: int, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """Rows of each bootstrap resample of the test set, stratified by class; seeded, so paired across runs.

    Without groups each class is resampled within itself (as many draws as it has rows), so every
    resample has exactly the test set's class counts. With `groups` (one patient/study id per row) whole
    groups are drawn with replacement within strata, a group's stratum being its majority class (see
    `_group_strata` for a class that is nobody's majority); every resample keeps every class that has
    rows, and a group's rows always move together. Classes and groups are taken in sorted order.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ValueError("no test rows to resample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    _, classes = np.unique(labels, return_inverse=True)
    classes = classes.ravel()
    n_classes = int(classes.max()) + 1
    if groups is None:
        blocks = [
            rows[rng.integers(0, len(rows), size=(n_resamples, len(rows)))]
            for rows in _members(classes, n_classes)
        ]
        return list(np.concatenate(blocks, axis=1))
    group_labels = np.asarray(groups)
    if len(group_labels) != n:
        raise ValueError(f"groups has {len(group_labels)} labels for {n} rows")
    _, group_codes = np.unique(group_labels, return_inverse=True)
    group_codes = group_codes.ravel()
    n_groups = int(group_codes.max()) + 1
    members = _members(group_codes, n_groups)
    strata = _group_strata(classes, group_codes, n_groups, n_classes)
    in_stratum = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    draws = np.concatenate(
        [g[rng.integers(0, len(g), size=(n_resamples, len(g)))] for g in in_stratum], axis=1
    )
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


def unit_labels(labels: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """The class of each unit the bootstrap draws: each image, or with groups each group's images of one
    class (a class's evidence is its patients, not its slices)."""
    labels = np.asarray(labels)
    if groups is None:
        return labels
    return np.array([label for label, _ in sorted(set(zip(labels.tolist(), np.asarray(groups).tolist(),
                                                               strict=True)))], dtype=labels.dtype)


def single_unit_class(labels: np.ndarray, groups: np.ndarray | None = None) -> str | None:
    """"image" or "group" when some class's test cases are all one image, or all one group's images, else
    None. Every class-stratified resample then holds that unit, so nothing of its sampling error reaches
    an interval: one built from these resamples would be too narrow (estimands.summarise gives none)."""
    alone = (np.unique(unit_labels(labels, groups), return_counts=True)[1] == 1).any()
    return ("image" if groups is None else "group") if alone else None


def resample_weights(
    labels: np.ndarray, n_resamples: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """(n_resamples, n) draw counts of each test case: `stratified_indices` as weights."""
    n = len(labels)
    return np.stack(
        [np.bincount(rows, minlength=n) for rows in stratified_indices(labels, n_resamples, seed, groups)]
    ).astype(float)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite values; NaN when there are none."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
