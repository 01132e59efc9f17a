"""Resampling the test set: the same resamples for every run of a dataset, so comparisons are paired."""

import numpy as np


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Rows of each resample; seeded, so every run (and the paired test) draws the same resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite values; NaN when there are none."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
