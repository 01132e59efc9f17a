"""The metric table: every metric declared once, and everything else reads it.

Evaluation computes the table, `metrics.json` and `leaderboard.csv` carry its keys, the report ranks
by any of them in the declared direction, clips intervals of bounded ones to [0, 1] and requires the
headline ones. A new metric is one `Metric(...)` line here (and its formula in `scores.py`; for an
interval also its form under resampling weights in `weighted.py`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmark.metrics import scores, weighted


@dataclass(frozen=True)
class Metric:
    key: str  # snake_case key in metrics.json and leaderboard.csv
    name: str  # what readers see
    compute: Callable[..., float] = field(repr=False)  # (y_true, probabilities, settings) -> value
    higher_is_better: bool = True
    bounded: bool = True  # lies in [0, 1], so intervals are clipped to it
    bootstrapped: bool = False  # metrics.json gets <key>_ci_low / <key>_ci_high from the test-set bootstrap
    headline: bool = False  # a column of the leaderboard (per-class: of its per-class table), with interval
    per_class: bool = False  # one value per class, under metrics.json's per_class
    # an unweighted mean over the classes: undefined (NaN) on test images without every class, rather
    # than a mean over fewer classes or with a 0 for the absent one (an external site without a class)
    over_classes: bool = False
    # (weights (B, n), y_true, probabilities, settings) -> (B,) values, or (B, K) per class: the formula
    # on B bootstrap resamples at once (weighted.py); every metric with an interval has one
    resampled: Callable[..., np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.over_classes:  # both forms, so metrics.json and the leaderboard say the same
            object.__setattr__(self, "compute", _of_every_class(self.compute))
            if self.resampled is not None:
                object.__setattr__(self, "resampled", _resampled_of_every_class(self.resampled))


def _of_every_class(compute: Callable[..., float]) -> Callable[..., float]:
    def value(y: np.ndarray, p: np.ndarray, settings) -> float:
        absent = np.bincount(np.asarray(y, dtype=int), minlength=p.shape[1]).min() == 0
        return float("nan") if absent else compute(y, p, settings)

    return value


def _resampled_of_every_class(resampled: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def values(w: np.ndarray, y: np.ndarray, p: np.ndarray, settings) -> np.ndarray:
        found = np.array(resampled(w, y, p, settings), dtype=float)
        class_weight = w @ np.eye(p.shape[1])[np.asarray(y, dtype=int)]  # (B, K)
        found[(class_weight == 0).any(axis=1)] = np.nan
        return found

    return values


def _plain(formula: Callable[[np.ndarray, np.ndarray], float]) -> Callable[..., float]:
    """A formula that needs no evaluation setting."""
    return lambda y, p, settings: formula(y, p)


def _per_class(key: str) -> Callable[..., np.ndarray]:
    return lambda y, p, settings: scores.per_class_counts(y, p)[key]


def _ece(y: np.ndarray, p: np.ndarray, settings) -> float:
    return scores.expected_calibration_error(y, p, settings.ece_bins)


def _weighted(
    formula: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> Callable[..., np.ndarray]:
    return lambda w, y, p, settings: formula(w, y, p)


def _weighted_ece(w: np.ndarray, y: np.ndarray, p: np.ndarray, settings) -> np.ndarray:
    return weighted.expected_calibration_error(w, y, p, settings.ece_bins)


METRICS: tuple[Metric, ...] = (
    Metric(
        "accuracy",
        "accuracy",
        _plain(scores.accuracy),
        bootstrapped=True,
        headline=True,
        resampled=_weighted(weighted.accuracy),
    ),
    Metric(
        "balanced_accuracy",
        "balanced accuracy",
        _plain(scores.balanced_accuracy),
        bootstrapped=True,
        headline=True,
        resampled=_weighted(weighted.balanced_accuracy),
        over_classes=True,
    ),
    Metric(
        "macro_f1",
        "macro-F1",
        _plain(scores.macro_f1),
        bootstrapped=True,
        headline=True,
        resampled=_weighted(weighted.macro_f1),
        over_classes=True,
    ),
    Metric(
        "macro_auroc",
        "macro-AUROC",
        _plain(scores.macro_auroc),
        bootstrapped=True,
        headline=True,
        resampled=_weighted(weighted.macro_auroc),
        over_classes=True,
    ),
    Metric("macro_precision", "macro precision", _plain(scores.averaged_prf("macro", 0)), over_classes=True),
    Metric("macro_recall", "macro recall", _plain(scores.averaged_prf("macro", 1)), over_classes=True),
    Metric("weighted_precision", "weighted precision", _plain(scores.averaged_prf("weighted", 0))),
    Metric("weighted_recall", "weighted recall", _plain(scores.averaged_prf("weighted", 1))),
    Metric("weighted_f1", "weighted F1", _plain(scores.averaged_prf("weighted", 2))),
    Metric("ece", "ECE", _ece, higher_is_better=False, resampled=_weighted_ece),
    Metric(
        "brier",
        "Brier score",
        _plain(scores.brier_score),
        higher_is_better=False,
        bounded=False,
        resampled=_weighted(weighted.brier_score),
    ),
    Metric(
        "log_loss",
        "log loss",
        _plain(scores.log_loss),
        higher_is_better=False,
        bounded=False,
        resampled=_weighted(weighted.log_loss),
    ),
    Metric("precision", "precision", _per_class("precision"), per_class=True),
    Metric("recall", "recall", _per_class("recall"), per_class=True),
    Metric(
        "sensitivity",
        "sensitivity",
        _per_class("sensitivity"),
        per_class=True,
        headline=True,
        resampled=_weighted(weighted.recalls),
    ),
    Metric(
        "specificity",
        "specificity",
        _per_class("specificity"),
        per_class=True,
        headline=True,
        resampled=_weighted(weighted.specificities),
    ),
    Metric("f1", "F1", _per_class("f1"), per_class=True, headline=True),
    Metric(
        "auroc",
        "AUROC",
        _per_class("auroc"),
        per_class=True,
        headline=True,
        resampled=_weighted(weighted.ovr_aurocs),
    ),
)
BY_KEY = {metric.key: metric for metric in METRICS}
OVERALL = tuple(m for m in METRICS if not m.per_class)
PER_CLASS = tuple(m for m in METRICS if m.per_class)
BOOTSTRAPPED = tuple(m for m in OVERALL if m.bootstrapped)  # intervals in every run's metrics.json
WITH_INTERVAL = tuple(m for m in METRICS if m.resampled is not None)  # intervals in the leaderboard
HEADLINE = tuple(m for m in OVERALL if m.headline)
# what `primary_metric` may name: a ranking is read with its intervals and paired comparisons
RANKABLE = tuple(m.key for m in OVERALL if m.resampled is not None)


def metric(key: str) -> Metric:
    return BY_KEY[key]
