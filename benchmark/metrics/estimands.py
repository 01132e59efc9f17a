"""What a benchmark number estimates, and intervals that say so (groundwork; not yet used by runs or report).

The estimand is the mean over training seeds of the per-seed test metric. Its uncertainty has two
sources: the test set is a sample of images (or patients), and the seeds are a sample of trainings. A
t-interval over the seeds' test metrics sees only the second; a bootstrap of the test set only the first.
`two_level_interval` resamples both: each replicate draws one stratified resample of the test rows (or
groups) and, independently, the seeds with replacement, and averages the drawn seeds' metrics on the
drawn rows. Resampling is stratified by class, so every class is present in every replicate and
class-conditional metrics (AUROC, macro-F1) are defined in all of them.

When the bootstrap cannot say anything (every valid replicate equal, e.g. three test images all
classified correctly, or fewer than `MIN_VALID` valid replicates), a proportion metric falls back to the
exact Clopper-Pearson interval of its pooled counts rather than reporting a zero-width interval.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, norm

from benchmark.metrics.bootstrap import percentile_interval

BOOTSTRAP = "two-level bootstrap"
CLOPPER_PEARSON_FALLBACK = "Clopper-Pearson (bootstrap degenerate)"
DEGENERATE = "two-level bootstrap (degenerate)"  # no counts to fall back on: the interval is as found
MIN_VALID = 10  # fewer valid replicates than this and the percentile interval means nothing


@dataclass(frozen=True)
class Interval:
    estimate: float  # mean over seeds of the per-seed test metric
    low: float
    high: float
    n_valid: int  # replicates with a finite value
    n_resamples: int  # replicates drawn, valid or not
    method: str  # BOOTSTRAP, or the name of the fallback that gave low and high


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


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


def wilson_interval(successes: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; NaN for n = 0."""
    _check_level(level)
    if n <= 0:
        return float("nan"), float("nan")
    z = norm.ppf(1 - (1 - level) / 2)
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z / denominator * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def clopper_pearson_interval(successes: float, n: float, level: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion from beta quantiles; NaN for n = 0.

    `successes` may be fractional (counts pooled as a mean over seeds): the beta quantiles extend to it.
    """
    _check_level(level)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside [0, {n}]")
    alpha = 1 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high


def two_level_replicates(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    probabilities_by_seed: Sequence[np.ndarray],
    n_resamples: int,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """One value per replicate (NaN where a drawn seed's metric is undefined): the mean, over a resample
    of the seeds drawn with replacement, of each drawn seed's metric on one stratified resample of rows."""
    y_true = np.asarray(y_true)
    n_seeds = len(probabilities_by_seed)
    if n_seeds == 0:
        raise ValueError("no seeds")
    for p in probabilities_by_seed:
        if len(p) != len(y_true):
            raise ValueError(f"probabilities have {len(p)} rows for {len(y_true)} labels")
    rows_by_replicate = stratified_indices(y_true, n_resamples, seed, groups)
    seed_draws = np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_resamples, n_seeds))
    values = np.empty(n_resamples)
    for b, rows in enumerate(rows_by_replicate):
        times = np.bincount(seed_draws[b], minlength=n_seeds)
        y = y_true[rows]
        total = 0.0
        for s in np.flatnonzero(times):
            total += times[s] * metric(y, probabilities_by_seed[s][rows])
        values[b] = total / n_seeds
    return values


def two_level_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    probabilities_by_seed: Sequence[np.ndarray],
    n_resamples: int,
    seed: int,
    level: float,
    groups: np.ndarray | None = None,
    proportion_counts: Callable[[np.ndarray, np.ndarray], tuple[int, int]] | None = None,
) -> Interval:
    """Percentile interval of the mean over seeds of the per-seed test metric (`two_level_replicates`).

    `n_valid` counts the replicates with a finite value; `n_resamples` all of them, so undefined ones
    stay visible. When the bootstrap is degenerate (fewer than MIN_VALID valid replicates, or all valid
    ones equal) and `proportion_counts` (y, p) -> (successes, n) is given, low and high are the
    Clopper-Pearson interval of the counts averaged over seeds (method CLOPPER_PEARSON_FALLBACK).
    Without it the degenerate interval is returned as found (NaN with fewer than MIN_VALID valid
    replicates) and `method` says DEGENERATE.
    """
    _check_level(level)
    y_true = np.asarray(y_true)
    estimate = float(np.mean([metric(y_true, p) for p in probabilities_by_seed]))
    values = two_level_replicates(metric, y_true, probabilities_by_seed, n_resamples, seed, groups)
    valid = values[np.isfinite(values)]
    n_valid = len(valid)
    degenerate = n_valid < MIN_VALID or np.ptp(valid) <= 1e-12
    if not degenerate:
        low, high = percentile_interval(valid, level)
        return Interval(estimate, low, high, n_valid, n_resamples, BOOTSTRAP)
    if proportion_counts is not None:
        counts = np.array([proportion_counts(y_true, p) for p in probabilities_by_seed], dtype=float)
        successes, n = counts.mean(axis=0)
        low, high = clopper_pearson_interval(successes, n, level)
        return Interval(estimate, low, high, n_valid, n_resamples, CLOPPER_PEARSON_FALLBACK)
    if n_valid < MIN_VALID:
        return Interval(estimate, float("nan"), float("nan"), n_valid, n_resamples, DEGENERATE)
    low, high = percentile_interval(valid, level)
    return Interval(estimate, low, high, n_valid, n_resamples, DEGENERATE)


def accuracy_counts(y_true: np.ndarray, probabilities: np.ndarray) -> tuple[int, int]:
    """(correct, total): the counts behind accuracy, for `proportion_counts`."""
    return int(np.sum(np.asarray(probabilities).argmax(axis=1) == y_true)), len(y_true)


def small_classes(y_true: np.ndarray, class_names: Sequence[str], minimum: int = 10) -> list[str]:
    """Classes with fewer than `minimum` test cases (none counts), in class order, for a visible warning."""
    counts = np.bincount(np.asarray(y_true, dtype=int), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise ValueError(f"labels go up to {len(counts) - 1} but there are {len(class_names)} class names")
    return [name for name, count in zip(class_names, counts, strict=True) if count < minimum]
