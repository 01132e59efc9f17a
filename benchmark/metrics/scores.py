"""The metric formulas: pure functions of (true labels, predicted probabilities).

Vectorised where the bootstrap calls them thousands of times; each equals its sklearn counterpart.
"""

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm

from benchmark.metrics import weighted


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


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, true class by row and predicted class by column."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def macro_f1(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Macro F1 from the confusion matrix (sklearn's zero_division=0 convention)."""
    n_classes = probabilities.shape[1]
    counts = confusion(y_true, probabilities.argmax(axis=1), n_classes)
    tp = np.diag(counts).astype(float)
    denominator = counts.sum(0) + counts.sum(1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def accuracy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == y_true))


def balanced_accuracy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    return float(skm.balanced_accuracy_score(y_true, probabilities.argmax(axis=1)))


def averaged_prf(average: str, which: int):
    """Precision (0), recall (1) or F1 (2), macro- or weighted-averaged over classes (sklearn)."""

    def compute(y_true: np.ndarray, probabilities: np.ndarray) -> float:
        found = skm.precision_recall_fscore_support(
            y_true,
            probabilities.argmax(axis=1),
            labels=range(probabilities.shape[1]),
            average=average,
            zero_division=0,
        )
        return float(found[which])

    return compute


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Scikit-learn's, on rows scaled to sum to one: a float32 softmax sums to one only within float32
    rounding, and read back from predictions.csv as float64 (the ensemble, the report) it made
    scikit-learn warn that these were not probabilities."""
    rows = np.asarray(probabilities, dtype=float)
    return float(skm.log_loss(y_true, rows / rows.sum(axis=1, keepdims=True), labels=range(rows.shape[1])))


def brier_score(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared distance between the predicted distribution and the one-hot truth (multi-class Brier,
    0 = perfect, 2 = certain and wrong)."""
    onehot = np.eye(probabilities.shape[1])[y_true]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


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


def per_class_counts(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Per class: precision, recall (= sensitivity), F1, specificity, AUROC and support, as arrays.

    A rate with no cases is NaN, not sklearn's zero_division=0: recall and F1 of a class with no test
    images, precision of a class never predicted, specificity when every image is of the class. A model
    never tested on a class has no sensitivity for it, and 0 would read as "misses every case".
    """
    n_classes = probabilities.shape[1]
    counts = confusion(y_true, probabilities.argmax(axis=1), n_classes)
    tp = np.diag(counts)
    support, called = counts.sum(1), counts.sum(0)
    negatives = counts.sum() - support
    recall = weighted.ratio(tp, support, np.nan)
    f1 = np.where(support > 0, weighted.ratio(2 * tp, support + called, np.nan), np.nan)
    return {
        "precision": weighted.ratio(tp, called, np.nan),
        "recall": recall,
        "f1": f1,
        "sensitivity": recall,
        "specificity": weighted.ratio(negatives - (called - tp), negatives, np.nan),
        "auroc": ovr_auroc(y_true, probabilities),
        "support": support,
    }


def predictive_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of each predicted distribution, in nats: 0 = certain, log(K) = uniform."""
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(clipped * np.log(clipped)).sum(axis=1)
