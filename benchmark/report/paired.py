"""Seed-averaged test predictions, and the paired bootstrap that asks whether #1 really beats #2.

Pairing matters: both rows are scored on the same resampled test images, so the image-to-image
difficulty cancels out and only the difference between the models is left to vary.
"""

import math
from dataclasses import dataclass

import numpy as np

from benchmark.evaluate import bootstrap_indices, macro_auroc
from benchmark.report.stats import Row


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
    columns = [f"prob_{name}" for name in classes]
    tables = [run.predictions.set_index("file").sort_index() for run in row.runs]
    first = tables[0]
    if not first.index.is_unique:
        raise NotComparable(f"{row.label}: predictions.csv lists a file twice")
    for table in tables[1:]:
        if not table.index.equals(first.index) or not table["true_label"].equals(first["true_label"]):
            raise NotComparable(f"the seeds of {row.label} were tested on different images")
    probabilities = np.mean([table[columns].to_numpy(dtype=float) for table in tables], axis=0)
    labels = first["true_label"].astype(str).map({name: k for k, name in enumerate(classes)}).to_numpy()
    return Predictions(first.index.to_numpy(), labels, probabilities, classes)


def pooled(row: Row) -> tuple[np.ndarray, np.ndarray]:
    """Every seed's predictions stacked: the behaviour of a single model of this row, not an ensemble."""
    index = {name: k for k, name in enumerate(row.classes)}
    columns = [f"prob_{name}" for name in row.classes]
    labels = np.concatenate([run.predictions["true_label"].astype(str).map(index) for run in row.runs])
    probabilities = np.concatenate([run.predictions[columns].to_numpy(dtype=float) for run in row.runs])
    return labels.astype(int), probabilities


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
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
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
