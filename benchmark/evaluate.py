"""Test-split metrics with uncertainty: one accuracy number without error bars is not a result.

Everything here is a pure function of (true labels, predicted probabilities), so the report can
recompute it (paired bootstrap, ensembles) from `predictions.csv` alone.
"""

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy.stats import rankdata
from sklearn import metrics as skm

BOOTSTRAPPED = ("accuracy", "macro_f1", "macro_auroc")
COVERAGES = tuple(round(0.1 * k, 1) for k in range(1, 11))


def ovr_auroc(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per-class one-vs-rest AUROC by the rank (Mann-Whitney) formula; NaN for a class absent or alone.

    Equal to sklearn's roc_auc_score but vectorised, so 1000 bootstrap resamples take well under a second.
    """
    n_classes = probabilities.shape[1]
    aurocs = np.full(n_classes, np.nan)
    for k in range(n_classes):
        positive = y_true == k
        n_pos, n_neg = positive.sum(), (~positive).sum()
        if n_pos and n_neg:
            ranks = rankdata(probabilities[:, k])
            aurocs[k] = (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aurocs


def macro_auroc(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Macro one-vs-rest AUROC; for two classes, the AUROC of the positive class (index 1)."""
    aurocs = ovr_auroc(y_true, probabilities)
    if probabilities.shape[1] == 2:
        return float(aurocs[1])
    return float(np.mean(aurocs)) if not np.isnan(aurocs).any() else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro F1 from the confusion matrix (sklearn's zero_division=0 convention)."""
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(0) + confusion.sum(1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, n_bins: int) -> float:
    """|accuracy - confidence| averaged over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def bootstrap_scores(
    y_true: np.ndarray, probabilities: np.ndarray, indices: np.ndarray
) -> dict[str, np.ndarray]:
    """The bootstrapped metrics on each resample (rows of `indices`)."""
    n_classes = probabilities.shape[1]
    scores = {name: np.empty(len(indices)) for name in BOOTSTRAPPED}
    for i, rows in enumerate(indices):
        y, p = y_true[rows], probabilities[rows]
        predicted = p.argmax(axis=1)
        scores["accuracy"][i] = np.mean(predicted == y)
        scores["macro_f1"][i] = macro_f1(y, predicted, n_classes)
        scores["macro_auroc"][i] = macro_auroc(y, p)
    return scores


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Resample rows; shared across runs so comparisons on the same test images are paired."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def confidence_intervals(scores: dict[str, np.ndarray], level: float) -> dict[str, float]:
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in scores.items():
        low, high = (
            np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (np.nan,) * 2
        )
        intervals[f"{name}_ci_low"], intervals[f"{name}_ci_high"] = float(low), float(high)
    return intervals


def per_class(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict[str, dict]:
    """Precision, recall (= sensitivity), F1, support, specificity and AUROC for each class."""
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, predicted, labels=range(n_classes), zero_division=0
    )
    confusion = skm.confusion_matrix(y_true, predicted, labels=range(n_classes))
    aurocs = ovr_auroc(y_true, probabilities)
    result = {}
    for k, name in enumerate(class_names):
        negatives = confusion.sum() - confusion[k].sum()
        true_negatives = negatives - (confusion[:, k].sum() - confusion[k, k])
        result[name] = {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "sensitivity": float(recall[k]),
            "specificity": float(true_negatives / negatives) if negatives else float("nan"),
            "auroc": float(aurocs[k]),
        }
    return result


def predictive_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of each predicted distribution, in nats: 0 = certain, log(K) = uniform."""
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(clipped * np.log(clipped)).sum(axis=1)


def coverage_curve(y_true: np.ndarray, probabilities: np.ndarray) -> list[tuple[float, float]]:
    """(coverage, accuracy) when the model decides only its most certain cases and refers the rest.

    "Refer the most uncertain 10% to a radiologist" is the 0.9 point: accuracy on the 90% kept.
    """
    order = np.argsort(predictive_entropy(probabilities), kind="stable")
    correct = (probabilities.argmax(axis=1) == y_true)[order]
    return [(c, float(correct[: max(1, round(c * len(correct)))].mean())) for c in COVERAGES]


def evaluate(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str], cfg: DictConfig) -> dict:
    """Every test metric of a run, flat snake_case keys plus `per_class` and `confusion_matrix`."""
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    scores = {
        "n_test": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, predicted)),
        "macro_auroc": macro_auroc(y_true, probabilities),
        "log_loss": float(skm.log_loss(y_true, probabilities, labels=range(n_classes))),
        "ece": expected_calibration_error(y_true, probabilities, cfg.ece_bins),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, predicted, labels=range(n_classes), average=average, zero_division=0
        )
        scores |= {f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)}
    resamples = bootstrap_indices(len(y_true), cfg.n_bootstrap, cfg.bootstrap_seed)
    scores |= confidence_intervals(bootstrap_scores(y_true, probabilities, resamples), cfg.ci_level)
    curve = coverage_curve(y_true, probabilities)
    scores["accuracy_at_90_coverage"] = dict(curve)[0.9]
    scores["coverage_curve"] = [list(point) for point in curve]
    scores["per_class"] = per_class(y_true, probabilities, class_names)
    scores["confusion_matrix"] = skm.confusion_matrix(y_true, predicted, labels=range(n_classes)).tolist()
    return scores


def classification_report(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> str:
    """sklearn's text report plus the clinical pair (sensitivity, specificity) per class."""
    text = skm.classification_report(
        y_true,
        probabilities.argmax(axis=1),
        labels=range(len(class_names)),
        target_names=class_names,
        digits=4,
        zero_division=0,
    )
    rows = [f"{'class':>20} {'sensitivity':>12} {'specificity':>12}"]
    for name, values in per_class(y_true, probabilities, class_names).items():
        rows.append(f"{name:>20} {values['sensitivity']:>12.4f} {values['specificity']:>12.4f}")
    return text + "\n" + "\n".join(rows) + "\n"


def predictions_frame(
    files: list[str] | np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> pd.DataFrame:
    """predictions.csv: file, true and predicted class, one probability column per class, entropy."""
    names = np.asarray(class_names)
    table = pd.DataFrame({"file": list(files), "true_label": names[labels],
                          "predicted_label": names[probabilities.argmax(axis=1)]})
    for k, name in enumerate(class_names):
        table[f"prob_{name}"] = probabilities[:, k]
    table["entropy"] = predictive_entropy(probabilities)
    return table


def read_predictions_csv(path) -> pd.DataFrame:
    """predictions.csv back, with file and class names kept as text (class folders '00', 'NA' stay so)."""
    text = {"file": str, "true_label": str, "predicted_label": str}
    return pd.read_csv(path, dtype=text, keep_default_na=False)
