"""Thresholds chosen on validation by hand-checkable rules, and the rates they give on test."""

import numpy as np
import pytest

from benchmark.metrics.operating_points import operating_points_record

# Validation, positive class 1: positives score 0.9 0.8 0.6 0.4, negatives 0.7 0.5 0.3 0.2 0.1.
VAL_SCORES = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.5, 0.3, 0.2, 0.1])
VAL_Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])


def binary(scores: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - scores, scores])


def test_both_rules_by_hand_on_a_binary_task():
    test_y = np.array([1, 1, 0, 0, 0])
    test_scores = np.array([0.65, 0.3, 0.45, 0.35, 0.1])
    record = operating_points_record(
        VAL_Y, binary(VAL_SCORES), test_y, binary(test_scores), ["no", "yes"], 0.75
    )
    assert set(record) == {"target_sensitivity", "no", "yes"}  # both: which one matters is the reader's
    assert record["no"]["target_sensitivity"]["validation"]["sensitivity"] >= 0.75  # "no" not missed
    found = record["yes"]
    # sensitivity >= 0.75 needs 3 of 4 positives: the highest such threshold is 0.6 (specificity 4/5)
    assert found["target_sensitivity"]["threshold"] == 0.6
    assert found["target_sensitivity"]["validation"]["sensitivity"] == 0.75
    # Youden: at 0.6 J = 0.75 + 0.8 - 1 = 0.55; at 0.4 J = 1 + 0.6 - 1 = 0.6 (the maximum)
    assert found["youden"]["threshold"] == 0.4
    test = found["youden"]["test"]  # at 0.4: tp 1 (0.65), fn 1 (0.3), fp 1 (0.45), tn 2
    assert test == pytest.approx({"sensitivity": 0.5, "specificity": 2 / 3, "ppv": 0.5, "npv": 2 / 3})


def test_multi_class_judges_every_class_and_says_when_validation_cannot():
    rng = np.random.default_rng(0)
    y_val = np.array([0, 0, 0, 1, 1, 1, 0, 1])  # class 2 has no validation case
    p_val = rng.dirichlet(np.ones(3), len(y_val))
    y_test = np.array([0, 1, 2, 2])
    p_test = rng.dirichlet(np.ones(3), len(y_test))
    record = operating_points_record(y_val, p_val, y_test, p_test, ["a", "b", "c"], 0.95)
    assert set(record["a"]) == set(record["b"]) == {"target_sensitivity", "youden"}
    assert record["c"] == {"undefined": "no positive validation cases"}
    assert record["a"]["target_sensitivity"]["validation"]["sensitivity"] >= 0.95
