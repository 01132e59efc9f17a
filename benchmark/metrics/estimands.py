"""What a benchmark number estimates, and intervals that say so: used by every run, row and comparison.

The estimand is the mean over training seeds of the per-seed test metric. Its uncertainty has two
sources: the test set is a sample of images (or patients), and the seeds are a sample of trainings. A
t-interval over the seeds' test metrics sees only the second; a bootstrap of the test set only the first.
The two-level bootstrap resamples both: each replicate draws one stratified resample of the test rows
(or groups, `bootstrap.py`) and, independently, n - 1 of the n seeds with replacement (both levels the
rescaled bootstrap: a stratified mean's variance right for few units), and averages the drawn seeds'
metrics on the drawn rows. A single run is the one-seed case: its interval is the test-set part.

When the bootstrap cannot say anything (every valid replicate equal, e.g. three test images all
classified correctly, or fewer than `MIN_VALID` valid replicates), a proportion metric falls back to the
exact Clopper-Pearson interval of its pooled counts rather than reporting a zero-width interval. So it
does where a class's test cases are all one image; where they are all one patient's (a grouped test
split), the images are not independent and nothing is left to fall back on: no interval.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta, norm

from benchmark.metrics.bootstrap import draws_from, percentile_interval, resample_weights, single_unit_class

BOOTSTRAP = "two-level bootstrap"
TEST_SET_ONLY = "test-set bootstrap (no seed spread)"  # one seed, or seeds whose predictions are identical
BOOTSTRAPS = (BOOTSTRAP, TEST_SET_ONLY)
CLOPPER_PEARSON_FALLBACK = "Clopper-Pearson (bootstrap degenerate)"
DEGENERATE = "not estimable (bootstrap degenerate)"  # no counts to fall back on: no interval at all
SINGLE_UNIT = "not estimable (a class has a single test {unit})"  # bootstrap.single_unit_class
MIN_VALID = 10  # fewer valid replicates than this and the percentile interval means nothing
MIN_CASES = 10  # fewer cases (a class's in test, or validation's) than this and the reader is warned
Counts = tuple[float | np.ndarray, float | np.ndarray]  # (successes, cases) of a proportion; arrays per class


@dataclass(frozen=True)
class Interval:
    estimate: float  # mean over seeds of the per-seed test metric
    low: float
    high: float
    n_valid: int  # replicates with a finite value
    n_resamples: int  # replicates drawn, valid or not
    method: str  # one of BOOTSTRAPS, or the name of the fallback that gave low and high


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


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


def seed_draws(n_seeds: int, n_resamples: int, stream: int | list[int]) -> np.ndarray:
    """(n_resamples, n_seeds - 1) seed indices drawn with replacement (one of one seed): the rescaled
    bootstrap's n - 1 draws (`bootstrap.draws_from`), whose mean has the seeds' exact variance s^2 / n (n
    draws would shrink it by (n - 1) / n: a third too little over three seeds). `stream` seeds the
    generator, so a row keyed by its own stream draws the same seeds whenever the report is rebuilt."""
    return np.random.default_rng(stream).integers(0, n_seeds, size=(n_resamples, draws_from(n_seeds)))


def two_level_replicates(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B,) replicate values: for each replicate b, the mean over its drawn seeds of the seeds' values on
    test resample b (`per_seed` is (n_seeds, B), NaN where a seed's metric is undefined)."""
    return per_seed[draws, np.arange(draws.shape[0])[:, None]].mean(axis=1)


def summarise(
    estimate: float, replicates: np.ndarray, level: float, counts: tuple[float, float] | None = None,
    single_unit: str | None = None, seeds_vary: bool = True,
) -> Interval:
    """The percentile interval of the replicates, or the exact fallback where the bootstrap is degenerate.

    `n_valid` counts the replicates with a finite value; `n_resamples` all of them, so undefined ones
    stay visible. Degenerate = fewer than MIN_VALID valid replicates, or all valid ones equal (three test
    images all right): then a proportion with `counts` (successes, n; means over seeds) gets the
    Clopper-Pearson interval (method CLOPPER_PEARSON_FALLBACK); anything else has no interval (NaN,
    method DEGENERATE) rather than a zero-width one. `single_unit` ("image" or "group", from
    `bootstrap.single_unit_class`): the resamples never vary some class, so the bootstrap is degenerate
    whatever the replicates; a proportion's exact interval needs independent images ("image" only),
    else no interval (method SINGLE_UNIT). Without `seeds_vary` (one seed, or seeds whose predictions are
    identical) the interval is the test set's alone: method TEST_SET_ONLY, not BOOTSTRAP.
    """
    _check_level(level)
    valid = replicates[np.isfinite(replicates)]
    n_valid, n_resamples = len(valid), len(replicates)
    if single_unit is None and n_valid >= MIN_VALID and np.ptp(valid) > 1e-12:
        low, high = percentile_interval(valid, level)
        return Interval(estimate, low, high, n_valid, n_resamples, BOOTSTRAP if seeds_vary else TEST_SET_ONLY)
    if counts is not None and single_unit in (None, "image"):
        low, high = clopper_pearson_interval(*counts, level)
        return Interval(estimate, low, high, n_valid, n_resamples, CLOPPER_PEARSON_FALLBACK)
    method = DEGENERATE if single_unit is None else SINGLE_UNIT.format(unit=single_unit)
    return Interval(estimate, float("nan"), float("nan"), n_valid, n_resamples, method)


def two_level_interval(
    metric: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    y_true: np.ndarray,
    probabilities_by_seed: Sequence[np.ndarray],
    n_resamples: int,
    seed: int,
    level: float,
    groups: np.ndarray | None = None,
    proportion_counts: Callable[..., Counts] | None = None,
) -> Interval:
    """The interval of the mean over seeds of a per-seed test metric, from scratch: stratified test
    resamples (by group when given) x seeds drawn with replacement. `metric(weights, y, p)` scores a
    (B, n) weight matrix (a `weighted.py` formula); `proportion_counts(y, p, groups) -> (successes, n)`
    enables the exact fallback. The report does the same in steps, sharing one weight matrix across rows."""
    y_true = np.asarray(y_true)
    for p in probabilities_by_seed:
        if len(p) != len(y_true):
            raise ValueError(f"probabilities have {len(p)} rows for {len(y_true)} labels")
    weights = resample_weights(y_true, n_resamples, seed, groups)
    ones = np.ones((1, len(y_true)))
    estimate = float(np.mean([metric(ones, y_true, p)[0] for p in probabilities_by_seed]))
    per_seed = np.stack([metric(weights, y_true, p) for p in probabilities_by_seed])
    replicates = two_level_replicates(
        per_seed, seed_draws(len(probabilities_by_seed), n_resamples, [seed, 1])
    )
    counts = None
    if proportion_counts is not None:
        counts = tuple(
            np.mean([proportion_counts(y_true, p, groups) for p in probabilities_by_seed], axis=0)
        )
    return summarise(estimate, replicates, level, counts, single_unit_class(y_true, groups),
                     seeds_vary(probabilities_by_seed))


def seeds_vary(probabilities_by_seed: Sequence[np.ndarray]) -> bool:
    """Whether the seeds' test predictions differ: a probe fitted deterministically on one extractor's
    features gives every seed the same, so drawing its seeds adds no spread and it is one training."""
    first, *others = probabilities_by_seed
    return any(not np.array_equal(first, p) for p in others)


def in_units(successes: ArrayLike, cases: ArrayLike, units: ArrayLike) -> Counts:
    """Counts of cases restated over the independent units they come from (successes x units / cases, and
    units): slices of one patient are not independent trials, so an exact interval over images would be
    too narrow; over patients it is as wide as if each patient's slices were one case (0 where no cases)."""
    successes, cases, units = (np.asarray(a, dtype=float) for a in (successes, cases, units))
    rate = np.divide(successes, cases, out=np.zeros_like(successes), where=cases > 0)
    return rate * units, units


def units_of(groups: np.ndarray, rows: np.ndarray) -> int:
    """The groups (patients) among the rows a count is over."""
    return len(np.unique(groups[rows]))


def accuracy_counts(
    y_true: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None = None
) -> Counts:
    """(correct, total): the counts behind accuracy, for the exact fallback; with `groups`, in patients."""
    correct, total = int(np.sum(np.asarray(probabilities).argmax(axis=1) == y_true)), len(y_true)
    if groups is None:
        return correct, total
    return tuple(float(v) for v in in_units(correct, total, len(np.unique(groups))))


def sensitivity_counts(
    y_true: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None = None
) -> Counts:
    """Per class (true positives, positives); with `groups`, in each class's patients."""
    n_classes = probabilities.shape[1]
    hit = probabilities.argmax(axis=1) == y_true
    found = np.bincount(y_true[hit], minlength=n_classes), np.bincount(y_true, minlength=n_classes)
    if groups is None:
        return found
    groups = np.asarray(groups)
    return in_units(*found, [units_of(groups, y_true == k) for k in range(n_classes)])


def specificity_counts(
    y_true: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None = None
) -> Counts:
    """Per class (true negatives, negatives) one-vs-rest; with `groups`, in the patients of the other
    classes' cases."""
    n_classes = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    negatives = len(y_true) - np.bincount(y_true, minlength=n_classes)
    false_positives = np.bincount(predicted[predicted != y_true], minlength=n_classes)
    found = negatives - false_positives, negatives
    if groups is None:
        return found
    groups = np.asarray(groups)
    return in_units(*found, [units_of(groups, y_true != k) for k in range(n_classes)])


# The metrics that are proportions of cases, with their counts: where the bootstrap is degenerate
# their interval falls back to Clopper-Pearson (per-class ones give arrays, one entry per class).
PROPORTION_COUNTS = {
    "accuracy": accuracy_counts,
    "sensitivity": sensitivity_counts,
    "specificity": specificity_counts,
}


def small_classes(y_true: np.ndarray, class_names: Sequence[str], minimum: int = MIN_CASES) -> list[str]:
    """Classes with fewer than `minimum` test cases (none counts), in class order, for a visible warning."""
    counts = np.bincount(np.asarray(y_true, dtype=int), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise ValueError(f"labels go up to {len(counts) - 1} but there are {len(class_names)} class names")
    return [name for name, count in zip(class_names, counts, strict=True) if count < minimum]
