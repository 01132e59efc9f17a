"""Seed-averaged test predictions, and the paired bootstrap that asks whether #1 really beats #2.

Pairing matters: both rows are scored on the same resampled test images, so the image-to-image
difficulty cancels out and only the difference between the models is left to vary.
"""

import math
from dataclasses import dataclass

import numpy as np

from benchmark.metrics.bootstrap import bootstrap_indices, percentile_interval
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.predictions import labels_of, probabilities_of
from benchmark.metrics.table import BY_KEY
from benchmark.report.rows import Row


class NotComparable(ValueError):
    """Two rows (or the seeds of one row) were not tested on the same images; the message says why."""


@dataclass(frozen=True)
class Predictions:
    files: np.ndarray  # sorted, so two rows tested on the same images line up row by row
    labels: np.ndarray  # class indices into `classes`
    probabilities: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    metric: str  # the compared metric's key in the metric table
    observed: float  # metric(first) - metric(second), seed-averaged probabilities
    low: float
    high: float
    p_value: float
    n_test: int
    n_resamples: int  # resamples where both values were defined

    @property
    def at_floor(self) -> bool:
        """p is the bootstrap's resolution 1/B: the true p-value is only known to be smaller."""
        return self.p_value <= 1 / self.n_resamples


def seed_averaged(row: Row) -> Predictions:
    """The row's test probabilities averaged over its seeds, aligned by file name."""
    classes = tuple(row.classes)
    tables = [run.predictions.sort_values("file", kind="stable") for run in row.runs]
    first = tables[0]
    if not first["file"].is_unique:
        raise NotComparable(f"{row.label}: predictions.csv lists a file twice")
    for table in tables[1:]:
        if not (table["file"].tolist() == first["file"].tolist()
                and table["true_label"].tolist() == first["true_label"].tolist()):
            raise NotComparable(f"the seeds of {row.label} were tested on different images")
    probabilities = np.mean([probabilities_of(table, list(classes)) for table in tables], axis=0)
    labels = labels_of(first, list(classes))
    return Predictions(first["file"].to_numpy(), labels, probabilities, classes)


def pooled(row: Row) -> tuple[np.ndarray, np.ndarray]:
    """Every seed's predictions stacked: the behaviour of a single model of this row, not an ensemble."""
    labels = np.concatenate([labels_of(run.predictions, row.classes) for run in row.runs])
    probabilities = np.concatenate([probabilities_of(run.predictions, row.classes) for run in row.runs])
    return labels, probabilities


def paired_bootstrap(first: Row, second: Row, settings: Settings, key: str = "macro_auroc") -> Comparison:
    """The difference in metric `key` on the same resamples of the same test images, with CI and p-value
    (resamples, seed and level from the runs' evaluation settings).

    p = 2·min(P(diff ≤ 0), P(diff ≥ 0)) over the resamples, floored at 1/resamples (the resolution).
    """
    a, b = seed_averaged(first), seed_averaged(second)
    if (
        a.classes != b.classes
        or not np.array_equal(a.files, b.files)
        or not np.array_equal(a.labels, b.labels)
    ):
        raise NotComparable("different test sets")
    compute = BY_KEY[key].compute

    def difference(rows) -> float:
        y = a.labels[rows]
        return compute(y, a.probabilities[rows], settings) - compute(y, b.probabilities[rows], settings)

    resamples = bootstrap_indices(len(a.labels), settings.n_bootstrap, settings.bootstrap_seed)
    diffs = np.array([difference(rows) for rows in resamples])
    diffs = diffs[np.isfinite(diffs)]
    if not diffs.size:
        raise NotComparable(
            f"{BY_KEY[key].name} is undefined on every resample (a class is missing from the test set)"
        )
    low, high = percentile_interval(diffs, settings.ci_level)
    p_value = min(1.0, max(2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)), 1 / diffs.size))
    observed = difference(np.arange(len(a.labels)))
    return Comparison(
        first.label, second.label, key, observed, float(low), float(high), float(p_value), len(a.labels),
        diffs.size,
    )


def verdict(comparison: Comparison, alpha: float) -> str:
    """The plain-words conclusion at significance level `alpha`, in the metric's own direction."""
    level, metric = f"{alpha * 100:g}%", BY_KEY[comparison.metric]
    if math.isfinite(comparison.observed) and comparison.p_value < alpha:
        first_better = (comparison.observed > 0) == metric.higher_is_better
        winner = comparison.first if first_better else comparison.second
        return f"**{winner} is significantly better** on {metric.name} at the {level} level"
    return (f"#1 ({comparison.first}) is **not** significantly better than #2 on {metric.name} "
            f"at the {level} level")


def p_text(comparison: Comparison) -> str:
    """`p = 0.034`, or `p < 0.001` when the bootstrap cannot resolve smaller p-values."""
    if comparison.at_floor:
        floor = comparison.n_resamples
        return f"p < {1 / floor:.3g} (1/{floor}, the bootstrap's resolution)"
    return f"p = {comparison.p_value:.3g}"
