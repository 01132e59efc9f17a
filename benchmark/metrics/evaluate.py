"""Test-split metrics with uncertainty: one accuracy number without error bars is not a result.

Everything here is a pure function of (true labels, predicted probabilities) and the evaluation
settings, so the report and the ensemble can recompute it from `predictions.csv` alone. The settings
are recorded in `metrics.json` next to the numbers they shaped.
"""

import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from omegaconf import DictConfig
from sklearn import metrics as skm

from benchmark.errors import BenchmarkError
from benchmark.metrics.bootstrap import resample_weights, single_unit_class
from benchmark.metrics.estimands import PROPORTION_COUNTS, summarise
from benchmark.metrics.scores import per_class_counts, predictive_entropy
from benchmark.metrics.table import BOOTSTRAPPED, OVERALL, PER_CLASS

COVERAGES = tuple(round(0.1 * k, 1) for k in range(1, 11))
# the overall numbers classification_report.txt shows, computed as metrics.json's are
REPORTED = ("accuracy", *(f"{a}_{k}" for a in ("macro", "weighted") for k in ("precision", "recall", "f1")))


@dataclass(frozen=True)
class Settings:
    """What shapes the numbers besides the predictions; stored in metrics.json as `evaluation`."""

    ci_level: float
    n_bootstrap: int
    bootstrap_seed: int
    ece_bins: int

    @classmethod
    def from_config(cls, cfg: DictConfig | dict) -> "Settings":
        return cls(
            float(cfg["ci_level"]), int(cfg["n_bootstrap"]), int(cfg["bootstrap_seed"]), int(cfg["ece_bins"])
        )

    @classmethod
    def of_run(cls, metrics: dict) -> "Settings":
        """The settings a run recorded; a run from before they were recorded cannot be pooled."""
        recorded = metrics.get("evaluation")
        if not isinstance(recorded, dict):
            raise BenchmarkError("metrics.json has no `evaluation` settings: re-run it with force=true")
        return cls.from_config(recorded)

    def record(self) -> dict:
        return asdict(self)


def confidence_intervals(
    y_true: np.ndarray, probabilities: np.ndarray, settings: Settings, groups: Sequence | None = None
) -> dict:
    """`<key>_ci_low` / `<key>_ci_high` / `<key>_ci_method` of every bootstrapped metric: the one-seed case
    of the two-level bootstrap, the test set's alone (stratified by class; with `groups`, one per test
    image, whole groups are drawn), with the exact fallback for proportions where the bootstrap is
    degenerate."""
    groups = None if groups is None else np.asarray(groups)
    weights = resample_weights(y_true, settings.n_bootstrap, settings.bootstrap_seed, groups)
    single_unit = single_unit_class(y_true, groups)
    intervals = {}
    for m in BOOTSTRAPPED:
        counts = PROPORTION_COUNTS.get(m.key)
        found = summarise(
            m.compute(y_true, probabilities, settings),
            m.resampled(weights, y_true, probabilities, settings),
            settings.ci_level,
            None if counts is None else counts(y_true, probabilities, groups),
            single_unit,
            seeds_vary=False,  # one run: the test set's sampling error alone
        )
        intervals[f"{m.key}_ci_low"], intervals[f"{m.key}_ci_high"] = found.low, found.high
        intervals[f"{m.key}_ci_method"] = found.method
    return intervals


def per_class(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str], settings: Settings
) -> dict[str, dict]:
    """Every per-class metric of the table, and the support, for each class."""
    columns = {m.key: m.compute(y_true, probabilities, settings) for m in PER_CLASS}
    support = per_class_counts(y_true, probabilities)["support"]
    return {
        name: {**{key: float(values[k]) for key, values in columns.items()}, "support": int(support[k])}
        for k, name in enumerate(class_names)
    }


def coverage_curve(y_true: np.ndarray, probabilities: np.ndarray) -> list[tuple[float, float]]:
    """(coverage, accuracy) when the model decides only its most certain cases and refers the rest.

    "Refer the most uncertain 10% to a radiologist" is the 0.9 point: accuracy on the 90% kept.
    """
    order = np.argsort(predictive_entropy(probabilities), kind="stable")
    correct = (probabilities.argmax(axis=1) == y_true)[order]
    return [(c, float(correct[: max(1, round(c * len(correct)))].mean())) for c in COVERAGES]


def evaluate(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    settings: Settings,
    groups: Sequence | None = None,
) -> dict:
    """Every test metric of a run, flat snake_case keys plus `per_class`, `confusion_matrix` and the
    `evaluation` settings that shaped them; `absent_classes` names the classes without a test image. With
    `groups` (patient/study/site of each test image) the intervals come from the cluster bootstrap:
    `bootstrap_unit` says which, `n_test_groups` how many."""
    scores: dict = {"n_test": int(len(y_true)), "absent_classes": absent_classes(y_true, class_names)}
    scores["bootstrap_unit"] = "image" if groups is None else "group"
    scores["n_test_groups"] = None if groups is None else int(len(set(groups)))
    scores |= {m.key: m.compute(y_true, probabilities, settings) for m in OVERALL}
    scores |= confidence_intervals(y_true, probabilities, settings, groups)
    curve = coverage_curve(y_true, probabilities)
    scores["accuracy_at_90_coverage"] = dict(curve)[0.9]
    scores["coverage_curve"] = [list(point) for point in curve]
    scores["per_class"] = per_class(y_true, probabilities, class_names, settings)
    predicted = probabilities.argmax(axis=1)
    scores["confusion_matrix"] = skm.confusion_matrix(
        y_true, predicted, labels=range(len(class_names))
    ).tolist()
    scores["evaluation"] = settings.record()
    return scores


def absent_classes(y_true: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Classes without a test image: their sensitivity and every mean over classes are undefined."""
    found = np.bincount(np.asarray(y_true, dtype=int), minlength=len(class_names))
    return [name for name, n in zip(class_names, found, strict=True) if n == 0]


def report_line(name: str, values: Sequence[float | None], support: int, width: int) -> str:
    """One row as sklearn's classification_report spaces it (4 digits); None leaves a cell empty."""
    cells = ["" if value is None else f"{value:.4f}" for value in values]
    return f"{name:>{width}} " + "".join(f" {cell:>9}" for cell in cells) + f" {support:>9}"


def report_notes(found: dict[str, np.ndarray], class_names: list[str], absent: list[str]) -> list[str]:
    """Why a number is nan, where sklearn's own report (zero_division=0) would print 0 (`absent`: the
    classes without test images, absent_classes)."""
    notes = []
    if absent:
        notes.append(
            f"nan = undefined. No test images of {', '.join(map(repr, absent))}: recall (sensitivity), F1 "
            "and AUROC of it, and every mean over classes (macro averages, balanced accuracy, macro-AUROC), "
            "are undefined, as in metrics.json (absent_classes); sklearn's classification_report would "
            "print 0 for them (zero_division=0)."
        )
    never = [name for name, p, n in zip(class_names, found["precision"], found["support"], strict=True)
             if np.isnan(p) and n > 0]
    if never:
        notes.append(
            f"Never predicted: {', '.join(map(repr, never))}: precision undefined (nan); the macro and "
            "weighted precision count it as 0 (sklearn's zero_division=0), as metrics.json does."
        )
    return notes


def classification_report(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> str:
    """sklearn's report layout, plus sensitivity and specificity per class, with metrics.json's numbers:
    both come from the metric table, so a class without test images is nan in both (sklearn's report
    printed 0 for its recall and F1, and a macro-F1 that metrics.json calls undefined)."""
    found = per_class_counts(y_true, probabilities)
    overall = {m.key: m.compute(y_true, probabilities, None) for m in OVERALL if m.key in REPORTED}
    width = max(len("weighted avg"), *(len(name) for name in class_names))
    n = len(y_true)
    header = ("precision", "recall", "f1-score", "support")
    lines = [f"{'':>{width}} " + "".join(f" {h:>9}" for h in header), ""]
    for k, name in enumerate(class_names):
        values = (found["precision"][k], found["recall"][k], found["f1"][k])
        lines.append(report_line(name, values, int(found["support"][k]), width))
    lines += ["", report_line("accuracy", (None, None, overall["accuracy"]), n, width)]
    for average in ("macro", "weighted"):
        values = [overall[f"{average}_{key}"] for key in ("precision", "recall", "f1")]
        lines.append(report_line(f"{average} avg", values, n, width))
    lines += ["", f"{'class':>20} {'sensitivity':>12} {'specificity':>12}"]
    for k, name in enumerate(class_names):
        lines.append(f"{name:>20} {found['sensitivity'][k]:>12.4f} {found['specificity'][k]:>12.4f}")
    notes = report_notes(found, class_names, absent_classes(y_true, class_names))
    return "\n".join(lines + [line for note in notes for line in ("", *textwrap.wrap(note, 100))]) + "\n"
