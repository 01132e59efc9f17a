"""#1 against every other row on the same test images, and seed-averaged predictions for the ensemble.

Pairing matters: both rows are scored on the same resampled test images, so the image-to-image
difficulty cancels out and only the difference between the models is left to vary. The ranking metric
is compared by the paired two-level bootstrap (the replicates behind each row's interval, on shared
test resamples and each row's own seed draws), AUROC also by DeLong's test on the rows' seeds (held
fixed: per class, and macro where macro-AUROC is not the ranking metric); each family of comparisons is
Holm-corrected. DeLong's variance treats every test image as independent: on a
test split with patient groups, AUROC goes through the paired bootstrap too, whose resamples draw patients.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from benchmark.metrics.bootstrap import percentile_interval
from benchmark.metrics.calibration import apply_temperature
from benchmark.metrics.delong import delong_ovr, holm
from benchmark.metrics.predictions import labels_of, probabilities_of
from benchmark.metrics.table import BY_KEY
from benchmark.report.estimates import NotComparable, aligned
from benchmark.report.rows import Row

DELONG = "DeLong (seeds held fixed)"


@dataclass(frozen=True)
class Predictions:
    files: np.ndarray  # sorted, so two rows tested on the same images line up row by row
    labels: np.ndarray  # class indices into `classes`
    probabilities: np.ndarray
    classes: tuple[str, ...]
    groups: np.ndarray | None = None  # patient/study of each image when the split had groups


@dataclass(frozen=True)
class Comparison:
    """#1 minus another row on one metric, on the same test images."""

    first: str
    second: str
    metric: str  # the metric table's key, or "auroc <class>" / "macro-AUROC" for DeLong
    method: str  # "paired bootstrap" or DELONG
    observed: float  # metric(first) - metric(second), each the mean over its seeds
    low: float
    high: float
    p_value: float
    n_resamples: int  # valid bootstrap replicates (0 for DeLong)
    p_adjusted: float = math.nan  # Holm over the comparisons of its family

    @property
    def at_floor(self) -> bool:
        """p is the bootstrap's resolution 1/B: the true p-value is only known to be smaller."""
        return self.n_resamples > 0 and self.p_value <= 1 / self.n_resamples


def seed_averaged(row: Row) -> Predictions:
    """The row's test probabilities averaged over its seeds (an ensemble of its seeds), aligned by file."""
    try:
        files, labels, groups, probabilities = aligned(row.runs, row.classes)
    except NotComparable as error:
        raise NotComparable(f"{row.label}: {error}") from None
    return Predictions(np.asarray(files), labels, probabilities.mean(axis=0), tuple(row.classes), groups)


def pooled(row: Row, temperatures: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every seed's predictions stacked: the behaviour of a single model of this row, not an ensemble;
    with `temperatures` (one per seed) each seed's probabilities after its own temperature scaling."""
    labels = np.concatenate([labels_of(run.predictions, row.classes) for run in row.runs])
    found = [probabilities_of(run.predictions, row.classes) for run in row.runs]
    if temperatures is not None:
        found = [apply_temperature(p, t) for p, t in zip(found, temperatures, strict=True)]
    return labels, np.concatenate(found)


def same_test_set(first: Row, second: Row) -> None:
    a, b = first.estimates, second.estimates
    for row, found in ((first, a), (second, b)):
        if found is None or found.test is None:
            raise NotComparable(f"{row.label}: {found.problem if found else 'no estimates'}")
    if a.test.files != b.test.files or not np.array_equal(a.test.labels, b.test.labels):
        raise NotComparable("different test sets")


def paired_bootstrap(first: Row, second: Row, key: str, level: float) -> Comparison:
    """The difference of the two rows' values of `key` with its interval and two-sided p-value, from the
    replicates behind their intervals: p = 2 min(P(diff <= 0), P(diff >= 0)), floored at 1/B."""
    same_test_set(first, second)
    a, b = first.estimates, second.estimates
    if a.test.single_unit:  # the replicates never vary that class: a difference's spread would be too narrow
        raise NotComparable(f"a class has a single test {a.test.single_unit}, which every resample holds")
    if key not in a.replicates or key not in b.replicates:
        raise NotComparable(f"{BY_KEY[key].name} has no bootstrap interval")
    diffs = a.replicates[key] - b.replicates[key]
    diffs = diffs[np.isfinite(diffs)]
    if not diffs.size:
        raise NotComparable(f"{BY_KEY[key].name} is undefined on every resample")
    low, high = percentile_interval(diffs, level)
    p_value = min(1.0, max(2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)), 1 / diffs.size))
    observed = a.intervals[key].estimate - b.intervals[key].estimate
    return Comparison(
        first.label, second.label, key, "paired bootstrap", observed, low, high, float(p_value), diffs.size
    )


def delong(first: Row, second: Row, level: float) -> tuple[list[Comparison], list[Comparison]]:
    """DeLong's tests of the seed-mean AUROC (the seeds held fixed): macro (binary: the positive class)
    and, for more than two classes, each class one-vs-rest."""
    same_test_set(first, second)
    classes, a, b = first.classes, first.estimates, second.estimates
    try:
        found = delong_ovr(a.test.labels, a.probabilities, b.probabilities, level=level)
    except ValueError as error:
        raise NotComparable(str(error)) from None
    by_class = [(f"AUROC {classes[k]}", found["per_class"][k]) for k in found["classes"]]

    def tests(results: list) -> list[Comparison]:
        return [Comparison(first.label, second.label, name, DELONG, r.difference, r.ci_low, r.ci_high,
                           r.p_value, 0) for name, r in results]

    macro, per_class = tests([("macro-AUROC", found["macro"])]), tests(by_class if len(classes) > 2 else [])
    return macro, per_class


def grouped(row: Row) -> bool:
    """Whether the row's test images carry patient/study groups (its bootstrap resamples groups)."""
    test = row.estimates.test if row.estimates is not None else None
    return test is not None and test.groups is not None


def auroc_tests(first: Row, second: Row, key: str, level: float) -> tuple[list[Comparison], list[Comparison]]:
    """(macro, per class) tests of AUROC beyond the ranking's: DeLong's, or on grouped test images the
    paired bootstrap of macro-AUROC over patients. None of macro-AUROC when that is the ranking metric:
    the ranking's paired two-level bootstrap already tests it, for the estimand the rows report (DeLong's,
    the seeds held fixed, answered a narrower question and could disagree with it)."""
    ranked = key == "macro_auroc"
    if grouped(first):
        return ([] if ranked else [paired_bootstrap(first, second, "macro_auroc", level)]), []
    if ranked and len(first.classes) <= 2:  # nothing of DeLong's would be shown
        return [], []
    macro, per_class = delong(first, second, level)
    return ([] if ranked else macro), per_class


def with_holm(comparisons: list[Comparison]) -> list[Comparison]:
    """The family's p-values adjusted by Holm's step-down method (controls the family-wise error)."""
    adjusted = holm([c.p_value for c in comparisons])
    return [replace(c, p_adjusted=float(p)) for c, p in zip(comparisons, adjusted, strict=True)]


@dataclass(frozen=True)
class AllPairs:
    """#1 against every other row: one family per method (and per-class DeLong as its own family)."""

    ranking: list[Comparison]  # paired bootstrap on the ranking metric
    auroc: list[Comparison]  # macro-AUROC by DeLong (grouped: the paired bootstrap); none when it ranks
    auroc_per_class: list[Comparison]  # DeLong, each class (more than two classes, ungrouped only)
    not_comparable: list[tuple[str, str]]  # (row, why)


def against_first(rows: list[Row], key: str, level: float) -> AllPairs:
    """Compare #1 with #2..#k; every p-value Holm-adjusted within its family."""
    ranking, macro, per_class, failed = [], [], [], []
    first = rows[0]
    for other in rows[1:]:
        try:
            ranking.append(paired_bootstrap(first, other, key, level))
        except NotComparable as error:
            failed.append((other.label, str(error)))
            continue
        try:
            tests = auroc_tests(first, other, key, level)
        except NotComparable as error:
            failed.append((other.label, f"AUROC: {error}"))
            continue
        macro.extend(tests[0])
        per_class.extend(tests[1])
    return AllPairs(with_holm(ranking), with_holm(macro), with_holm(per_class), failed)


def significant(comparison: Comparison, alpha: float) -> bool:
    """Below `alpha` after Holm's correction."""
    return math.isfinite(comparison.p_adjusted) and comparison.p_adjusted < alpha


def p_text(comparison: Comparison, p_value: float | None = None) -> str:
    """`0.034`, or `< 0.001` where the bootstrap cannot resolve smaller p-values (p at 1/B)."""
    p_value = comparison.p_value if p_value is None else p_value
    if comparison.at_floor and p_value <= 1 / comparison.n_resamples:
        return f"< {1 / comparison.n_resamples:.2g}"
    return f"{p_value:.2g}" if p_value >= 0.001 else f"{p_value:.1e}"
