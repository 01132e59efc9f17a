"""Operating points: a threshold on one class's probability, chosen on validation and applied to test.

A screening model is used at a threshold, not at its AUROC. Two rules, both decided on the validation
split so the test set only measures them: the most specific threshold whose validation sensitivity
reaches a target (0.95 by default: "miss at most 1 in 20"), and the threshold maximising Youden's J
(sensitivity + specificity - 1). Every class is judged one-vs-rest, binary tasks too: class names sort
alphabetically, so "index 1" would be `normal` in a `covid`/`normal` folder, and which class a screening
must not miss is the reader's to say. A case is called positive when its probability is >= the threshold.
"""

import numpy as np
from sklearn.metrics import roc_curve

from benchmark.metrics.weighted import rates_at_threshold

RULES = ("target_sensitivity", "youden")


def choose(
    y_val: np.ndarray, scores: np.ndarray, positive: int, target_sensitivity: float
) -> dict[str, float]:
    """Both rules' thresholds on validation (sklearn's ROC curve enumerates the candidate thresholds)."""
    fpr, tpr, thresholds = roc_curve(y_val == positive, scores)
    finite = np.isfinite(thresholds)  # the first threshold is +inf (nothing called positive)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    reaching = np.flatnonzero(tpr >= target_sensitivity)  # thresholds decrease along the curve
    return {
        "target_sensitivity": float(thresholds[reaching[0]]),
        "youden": float(thresholds[np.argmax(tpr - fpr)]),  # argmax: the first, i.e. highest, on ties
    }


def rates(y: np.ndarray, scores: np.ndarray, positive: int, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV at a threshold (NaN where a denominator is 0)."""
    found = rates_at_threshold(np.ones((1, len(y))), y, scores, positive, threshold)
    return {name: float(values[0]) for name, values in found.items()}


def operating_points_record(
    y_val: np.ndarray,
    p_val: np.ndarray,
    y_test: np.ndarray,
    p_test: np.ndarray,
    class_names: list[str],
    target_sensitivity: float,
) -> dict:
    """metrics.json's `operating_points`: per judged class and rule, the validation threshold, its
    validation rates and the test rates it gives; a class validation cannot judge says why."""
    record: dict = {"target_sensitivity": target_sensitivity}
    for k in range(len(class_names)):
        positives = int(np.sum(y_val == k))
        if positives == 0 or positives == len(y_val):
            side = "positive" if positives == 0 else "negative"
            record[class_names[k]] = {"undefined": f"no {side} validation cases"}
            continue
        record[class_names[k]] = {
            rule: {
                "threshold": threshold,
                "validation": rates(y_val, p_val[:, k], k, threshold),
                "test": rates(y_test, p_test[:, k], k, threshold),
            }
            for rule, threshold in choose(y_val, p_val[:, k], k, target_sensitivity).items()
        }
    return record
