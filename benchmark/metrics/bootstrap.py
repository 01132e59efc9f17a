"""Resampling the test set: the same resamples for every run of a dataset, so comparisons are paired.

With groups (patients, studies, sites) the resampling unit is the group, not the image: slices of one
patient are not independent, and resampling them one by one gives intervals that are far too narrow.
"""

from collections.abc import Sequence

import numpy as np


def bootstrap_indices(
    n: int, n_resamples: int, seed: int, groups: Sequence | None = None
) -> np.ndarray | list[np.ndarray]:
    """Rows of each resample; seeded, so every run (and the paired test) draws the same resamples.

    Without groups: a (n_resamples, n) integer array, rows drawn with replacement.
    With `groups` (one label per row): a list of n_resamples index arrays; each replicate draws the
    distinct groups with replacement (as many draws as there are groups) and takes all their rows, so
    replicates differ in length. Groups are ordered by their sorted labels, so the draw is deterministic.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.integers(0, n, size=(n_resamples, n))
    labels = np.asarray(groups)
    if len(labels) != n:
        raise ValueError(f"groups has {len(labels)} labels for {n} rows")
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    sizes = np.bincount(inverse)
    members = np.split(order, np.cumsum(sizes)[:-1])
    draws = rng.integers(0, len(members), size=(n_resamples, len(members)))
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite values; NaN when there are none."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
