"""Temperature scaling (Guo et al., 2017): one scalar fitted on validation that softens or sharpens the
predicted probabilities without changing which class is predicted."""

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from benchmark.metrics import scores


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the logits up to a constant are log p, since softmax ignores shifts."""
    return softmax(np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature, axis=-1)


BOUNDS = (0.05, 20.0)  # searched range of T; a fit at an end says the validation predictions are degenerate


def fit_temperature(y_val: np.ndarray, p_val: np.ndarray) -> float:
    """The T minimising the validation negative log-likelihood (searched on log T within BOUNDS); an end of
    BOUNDS where the loss there is no higher than at the minimiser's answer. A validation split predicted
    all right has its loss falling all the way to T -> 0, flat at 0 in floating point below some T, and
    the search stopped anywhere in that flat stretch (0.06 or 0.12: a value that looked like an estimate,
    sharpened the test probabilities and made the test log loss 7x worse)."""
    logits = np.log(np.clip(p_val, 1e-12, 1.0))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y_val)), y_val].mean())

    found = float(minimize_scalar(nll, bounds=tuple(np.log(BOUNDS)), method="bounded").x)
    for end in BOUNDS:
        if nll(math.log(end)) <= nll(found) + 1e-12:
            return end
    return float(np.exp(found))


def at_bound(temperature: float) -> bool:
    """A fit at an end of BOUNDS is no estimate of T: the validation loss still fell beyond it (e.g. a model
    no better than chance: T -> inf), so its value is the search's limit, not the data's answer."""
    return not BOUNDS[0] * 1.01 < temperature < BOUNDS[1] * 0.99


def search_bounds(calibration: dict) -> tuple[float, float]:
    """The range the run's fit searched: the one it recorded, or BOUNDS for runs made before it did."""
    low, high = calibration.get("temperature_bounds") or BOUNDS
    return float(low), float(high)


def recorded_temperature(calibration: dict | None) -> float | None:
    """metrics.json's fitted temperature, None for a run made before calibration was part of a run (or a
    value that is no temperature): the one test predict, export, the model card and the report share."""
    value = (calibration or {}).get("temperature")
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        return None
    return float(value)


def recorded_bound(calibration: dict | None) -> float | None:
    """The search bound a recorded temperature stopped at (metrics.json's `calibration`), None when the
    temperature is an estimate or there is none. The one rule that predict, export, the model card and the
    report share: the run's `temperature_at_bound` flag, or for a run made before the flag was recorded,
    the value itself (at_bound)."""
    calibration = calibration or {}
    if (value := recorded_temperature(calibration)) is None:
        return None
    flagged = calibration.get("temperature_at_bound")
    if not (at_bound(value) if flagged is None else flagged):
        return None
    low, high = search_bounds(calibration)
    return high if abs(math.log(value / high)) < abs(math.log(value / low)) else low


def bound_range(calibration: dict | None) -> tuple[float, float] | None:
    """The range the fit searched where the recorded temperature stopped at its bound (`recorded_bound`),
    else None: predict, export and the model card name that range when they refuse or flag the value."""
    if recorded_bound(calibration) is None:
        return None
    return search_bounds(calibration or {})


def calibration_record(
    y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray, ece_bins: int
) -> dict:
    """metrics.json's `calibration`: the temperature fitted on validation and the test ECE, Brier score
    and log loss before and after applying it."""
    temperature = fit_temperature(y_val, p_val)
    scaled = apply_temperature(p_test, temperature)
    record: dict = {
        "temperature": temperature,
        "fitted_on": "validation",
        "temperature_at_bound": at_bound(temperature),
        "temperature_bounds": list(BOUNDS),  # the report shows a fit at a bound as the bound it hit
    }
    for name, formula in (
        ("ece", lambda y, p: scores.expected_calibration_error(y, p, ece_bins)),
        ("brier", scores.brier_score),
        ("log_loss", scores.log_loss),
    ):
        record[f"{name}_before"], record[f"{name}_after"] = formula(y_test, p_test), formula(y_test, scaled)
    return record
