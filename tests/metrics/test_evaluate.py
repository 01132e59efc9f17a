"""Metrics checked against sklearn and against hand-computed values."""

import numpy as np
import pytest
from sklearn.metrics import classification_report as sklearn_report
from sklearn.metrics import f1_score, roc_auc_score

from benchmark.metrics.evaluate import Settings, classification_report, coverage_curve, evaluate
from benchmark.metrics.predictions import predictions_frame, read_predictions
from benchmark.metrics.scores import (
    expected_calibration_error,
    macro_auroc,
    macro_f1,
    ovr_auroc,
    predictive_entropy,
)

CFG = Settings(ci_level=0.95, n_bootstrap=300, bootstrap_seed=0, ece_bins=15)


def noisy_predictions(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probabilities


def test_rank_auroc_equals_sklearn_with_ties():
    y, p = noisy_predictions()
    p = np.round(p, 2)  # force ties
    p = p / p.sum(1, keepdims=True)
    assert macro_auroc(y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for k in range(3):
        assert ovr_auroc(y, p)[k] == pytest.approx(roc_auc_score(y == k, p[:, k]))


def test_binary_auroc_is_that_of_the_positive_class():
    y, p = noisy_predictions(k=2)
    assert macro_auroc(y, p) == pytest.approx(roc_auc_score(y, p[:, 1]))


def test_macro_f1_equals_sklearn():
    y, p = noisy_predictions(seed=3)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p.argmax(1), average="macro"))


def test_ece_of_perfectly_calibrated_and_overconfident_models():
    y = np.array([0, 0, 0, 1])
    calibrated = np.array([[0.75, 0.25]] * 4)  # 75% confident, 75% right
    assert expected_calibration_error(y, calibrated, 15) == pytest.approx(0.0)
    overconfident = np.array([[0.99, 0.01]] * 4)
    assert expected_calibration_error(y, overconfident, 15) == pytest.approx(0.24)


def test_evaluate_reports_everything_with_consistent_intervals():
    y, p = noisy_predictions()
    scores = evaluate(y, p, ["normal", "pneumonia", "tumor"], CFG)
    for name in ("accuracy", "macro_f1", "macro_auroc"):
        assert scores[f"{name}_ci_low"] <= scores[name] <= scores[f"{name}_ci_high"]
        assert scores[f"{name}_ci_high"] - scores[f"{name}_ci_low"] > 0.01
    assert np.sum(scores["confusion_matrix"]) == 300
    tumor = scores["per_class"]["tumor"]
    confusion = np.array(scores["confusion_matrix"])
    negatives = confusion[[0, 1]].sum()
    assert tumor["specificity"] == pytest.approx((negatives - confusion[[0, 1], 2].sum()) / negatives)
    assert tumor["sensitivity"] == pytest.approx(confusion[2, 2] / confusion[2].sum())
    assert 0 < scores["log_loss"] < 2 and 0 <= scores["ece"] <= 1


def test_bootstrap_is_seeded():
    y, p = noisy_predictions()
    first, second = evaluate(y, p, list("abc"), CFG), evaluate(y, p, list("abc"), CFG)
    assert first["macro_auroc_ci_low"] == second["macro_auroc_ci_low"]


def test_entropy_bounds():
    assert predictive_entropy(np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx(0.0, abs=1e-9)
    assert predictive_entropy(np.full((1, 3), 1 / 3))[0] == pytest.approx(np.log(3))


def test_referring_uncertain_cases_raises_accuracy_when_uncertainty_is_informative():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    confident_right = np.tile([0.95, 0.05], (8, 1))
    confident_right[4:8] = [0.05, 0.95]
    unsure_wrong = np.array([[0.45, 0.55], [0.55, 0.45]])  # the two errors are the least certain
    curve = dict(coverage_curve(y, np.vstack([confident_right, unsure_wrong])))
    assert curve[1.0] == pytest.approx(0.8) and curve[0.8] == pytest.approx(1.0) and curve[0.9] < 1.0


def test_predictions_round_trip_keeps_class_names_as_text(tmp_path):
    names = ["00", "NA", "01"]
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    frame = predictions_frame(["x/1.png", "y/2.png"], probabilities, names, labels=np.array([0, 1]))
    frame.to_csv(tmp_path / "p.csv", index=False)
    back = read_predictions(tmp_path / "p.csv")
    assert back["true_label"].tolist() == ["00", "NA"] and back["predicted_label"].tolist() == ["00", "NA"]


def without_gamma() -> tuple[np.ndarray, np.ndarray]:
    """12 test images of 'alpha' and 'beta' only, two of them called 'gamma'."""
    y = np.array([0] * 8 + [1] * 4)
    return y, np.eye(3)[[0, 0, 0, 0, 1, 1, 2, 2, 1, 1, 1, 0]] * 0.8 + 0.2 / 3


def test_a_class_without_test_images_has_undefined_rates_and_is_named():
    y, p = without_gamma()
    scores = evaluate(y, p, ["alpha", "beta", "gamma"], CFG)
    gamma = scores["per_class"]["gamma"]
    assert gamma["support"] == 0 and gamma["precision"] == 0.0  # 2 'gamma' calls, both wrong: defined
    assert all(np.isnan(gamma[key]) for key in ("sensitivity", "recall", "f1", "auroc")), gamma
    assert gamma["specificity"] == pytest.approx(10 / 12)
    assert scores["absent_classes"] == ["gamma"]
    assert evaluate(*noisy_predictions(), list("abc"), CFG)["absent_classes"] == []


def test_a_rate_with_no_cases_is_nan_for_a_class_never_predicted():
    y, p = np.array([0, 0, 1, 1, 2, 2]), np.eye(3)[[0, 0, 0, 1, 1, 1]]
    c = evaluate(y, p, list("abc"), CFG)["per_class"]["c"]
    assert np.isnan(c["precision"]) and c["recall"] == 0.0 and c["f1"] == 0.0 and c["specificity"] == 1.0


def test_classification_report_says_what_metrics_json_says():
    y, p = without_gamma()
    scores = evaluate(y, p, ["alpha", "beta", "gamma"], CFG)
    text = classification_report(y, p, ["alpha", "beta", "gamma"])
    rows = {line[:12].strip(): line[12:].split() for line in text.splitlines() if line[:12].strip()}
    assert rows["gamma"][:3] == ["0.0000", "nan", "nan"] and rows["macro avg"][:3] == ["nan"] * 3
    assert rows["weighted avg"][2] == f"{scores['weighted_f1']:.4f}" and np.isnan(scores["macro_f1"])
    assert "No test images of 'gamma'" in text and "zero_division" in text


def test_classification_report_is_sklearns_when_every_class_is_present_and_predicted():
    y, p = noisy_predictions(seed=4)
    names = ["normal", "pneumonia", "tumor"]
    ours = classification_report(y, p, names)
    assert ours.startswith(sklearn_report(y, p.argmax(1), target_names=names, digits=4))
