"""Temperature scaling fitted on validation (numpy only): finds a known temperature, helps on new data."""

import numpy as np
import pytest

from benchmark.metrics import scores
from benchmark.metrics.calibration import BOUNDS, apply_temperature, calibration_record, fit_temperature


def overconfident(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), reported as softmax(z / temperature): T < 1 = overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    truth = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in truth])
    return y, apply_temperature(truth, temperature)


def test_the_temperature_that_made_the_probabilities_is_found():
    y, p = overconfident(4000, 0.25, 0)  # probabilities 4x too sharp
    assert fit_temperature(y, p) == pytest.approx(4.0, rel=0.2)


def test_scaling_fitted_on_validation_helps_on_test():
    y_val, p_val = overconfident(1000, 0.3, 1)
    y_test, p_test = overconfident(1000, 0.3, 2)
    record = calibration_record(y_val, p_val, y_test, p_test, ece_bins=15)
    assert record["temperature"] > 1 and record["fitted_on"] == "validation"
    assert record["temperature_at_bound"] is False
    assert record["log_loss_after"] < record["log_loss_before"]
    assert record["ece_after"] < record["ece_before"] / 2 and record["brier_after"] < record["brier_before"]
    assert record["ece_before"] == pytest.approx(scores.expected_calibration_error(y_test, p_test, 15))


def test_temperature_one_changes_nothing_and_no_temperature_changes_the_class():
    _, p = overconfident(200, 1.0, 3)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-9)
    for t in (0.3, 3.0):
        scaled = apply_temperature(p, t)
        assert np.allclose(scaled.sum(axis=1), 1) and np.array_equal(scaled.argmax(1), p.argmax(1))


def test_a_fit_stopped_at_either_end_of_its_search_says_so_and_which_search_it_was():
    """Chance-level predictions want T -> inf, soft but always right ones T -> 0: both fits stop at the end
    of BOUNDS they ran into, are flagged, and record the bounds (what the report shows instead of the value);
    a fit inside them is not flagged."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 300)
    chance = apply_temperature(rng.dirichlet(np.ones(3), 300), 0.2)  # confident and unrelated to the labels
    right = (np.eye(3)[y] + 1) / 4  # the true class always likeliest (0.5), but only slightly
    for p, end in ((chance, BOUNDS[1]), (right, BOUNDS[0])):
        record = calibration_record(y, p, y, p, ece_bins=10)
        assert record["temperature"] == pytest.approx(end, rel=0.02)
        assert record["temperature_at_bound"] is True
        assert record["temperature_bounds"] == list(BOUNDS)
    inside = calibration_record(*overconfident(1000, 0.3, 1), *overconfident(1000, 0.3, 2), ece_bins=15)
    assert BOUNDS[0] < inside["temperature"] < BOUNDS[1] and inside["temperature_at_bound"] is False


@pytest.mark.parametrize(
    ("calibration", "bound"),
    [
        ({"temperature": 1.7, "temperature_at_bound": False}, None),
        ({"temperature": 19.9, "temperature_at_bound": True, "temperature_bounds": [0.05, 20.0]}, 20.0),
        ({"temperature": 20.0}, BOUNDS[1]),  # a run made before the flag was recorded: from its value
        ({"temperature": BOUNDS[0]}, BOUNDS[0]),
        ({"temperature": 3.0}, None),
        ({"temperature": 20.0, "temperature_at_bound": False}, None),  # the recorded flag decides
        ({}, None),  # a run made before calibration was recorded
        (None, None),
    ],
)
def test_the_bound_a_recorded_temperature_stopped_at(calibration, bound):
    """One rule for predict, export, the model card and the report: the flag, else (older runs) the value."""
    from benchmark.metrics.calibration import recorded_bound

    assert recorded_bound(calibration) == bound


@pytest.mark.parametrize(
    ("calibration", "searched"),
    [
        ({"temperature": 19.9, "temperature_at_bound": True, "temperature_bounds": [0.1, 19.9]}, (0.1, 19.9)),
        ({"temperature": 20.0}, BOUNDS),  # a run made before the range was recorded: BOUNDS
        ({"temperature": 1.7, "temperature_at_bound": False}, None),
        (None, None),
    ],
)
def test_the_range_named_when_a_temperature_stopped_at_its_bound(calibration, searched):
    from benchmark.metrics.calibration import bound_range

    assert bound_range(calibration) == searched


@pytest.mark.parametrize("confidence", [0.9, 0.999])
def test_a_validation_split_predicted_all_right_gives_no_temperature_estimate(confidence):
    """Its loss falls all the way to T -> 0 (flat at 0 in floating point with confident predictions): the
    search stopped at 0.06 or 0.12, recorded as an estimate, not at its bound."""
    y = np.array([0, 1] * 10)
    p = np.where(y[:, None] == np.arange(2), confidence, 1 - confidence)
    assert fit_temperature(y, p) == BOUNDS[0]
    assert calibration_record(y, p, y, p, 10)["temperature_at_bound"] is True
