"""Seed-averaged test predictions, and the paired bootstrap that asks whether #1 really beats #2.

Pairing matters: both rows are scored on the same resampled test images, so the image-to-image
difficulty cancels out and only the difference between the models is left to vary.
"""

import math
from dataclasses import dataclass

import numpy as np

from benchmark.metrics.bootstrap import bootstrap_indices, percentile_interval
from benchmark.metrics.predictions import labels_of, probabilities_of
from benchmark.metrics.scores import macro_auroc
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
    observed: float  # macro-AUROC(first) - macro-AUROC(second), seed-averaged probabilities
    low: float
    high: float
    p_value: float
    n_test: int
    n_resamples: int  # resamples where both AUROCs were defined


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


def paired_bootstrap(first: Row, second: Row, n_bootstrap: int, seed: int, level: float) -> Comparison:
    """Macro-AUROC difference on the same resamples of the same test images, with CI and p-value.

    p = 2·min(P(diff ≤ 0), P(diff ≥ 0)) over the resamples, floored at 1/resamples (the resolution).
    """
    a, b = seed_averaged(first), seed_averaged(second)
    if (
        a.classes != b.classes
        or not np.array_equal(a.files, b.files)
        or not np.array_equal(a.labels, b.labels)
    ):
        raise NotComparable("different test sets")
    diffs = np.array(
        [
            macro_auroc(a.labels[rows], a.probabilities[rows])
            - macro_auroc(a.labels[rows], b.probabilities[rows])
            for rows in bootstrap_indices(len(a.labels), n_bootstrap, seed)
        ]
    )
    diffs = diffs[np.isfinite(diffs)]
    if not diffs.size:
        raise NotComparable(
            "macro-AUROC is undefined on every resample (a class is missing from the test set)"
        )
    low, high = percentile_interval(diffs, level)
    p_value = min(1.0, max(2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)), 1 / diffs.size))
    observed = macro_auroc(a.labels, a.probabilities) - macro_auroc(a.labels, b.probabilities)
    return Comparison(
        first.label,
        second.label,
        observed,
        float(low),
        float(high),
        float(p_value),
        len(a.labels),
        diffs.size,
    )


def verdict(comparison: Comparison, alpha: float) -> str:
    """The plain-words conclusion at significance level `alpha`."""
    level = f"{alpha * 100:g}%"
    if math.isfinite(comparison.observed) and comparison.p_value < alpha:
        winner = comparison.first if comparison.observed > 0 else comparison.second
        return f"**{winner} is significantly better** on macro-AUROC at the {level} level"
    return f"#1 ({comparison.first}) is **not** significantly better than #2 at the {level} level"
