"""The resampled formulas equal the metric table's own formulas on the expanded resample, case by case."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.metrics import scores, weighted
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import METRICS, WITH_INTERVAL

SETTINGS = Settings(ci_level=0.95, n_bootstrap=50, bootstrap_seed=0, ece_bins=10)


def predictions(n_classes: int, n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y]
    logits[:10] = np.round(logits[:10])  # some tied scores, which AUROC counts one half
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def test_every_metric_with_an_interval_has_a_resampled_formula():
    assert {m.key for m in METRICS if m.bootstrapped} <= {m.key for m in WITH_INTERVAL}


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("metric", WITH_INTERVAL, ids=lambda m: m.key)
def test_resampled_formula_equals_the_plain_one_on_each_expanded_resample(metric, n_classes):
    y, p = predictions(n_classes)
    rng = np.random.default_rng(1)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(8)]
    weights = np.stack([np.ones(len(y))] + [np.bincount(rows, minlength=len(y)) for rows in draws])
    found = metric.resampled(weights, y, p, SETTINGS)
    expected = [metric.compute(y, p, SETTINGS)]
    expected += [metric.compute(y[rows], p[rows], SETTINGS) for rows in draws]
    np.testing.assert_allclose(found, np.array(expected, dtype=float), rtol=1e-9, atol=1e-12)


def test_ovr_auroc_matches_sklearn_with_sample_weights():
    y, p = predictions(3)
    w = np.random.default_rng(2).integers(0, 4, len(y)).astype(float)
    found = weighted.ovr_aurocs(w[None], y, p)[0]
    for k in range(3):
        assert found[k] == pytest.approx(roc_auc_score(y == k, p[:, k], sample_weight=w))


def test_the_rescaled_bootstraps_fractional_weights_match_sklearns_sample_weight():
    """The rescaled bootstrap weighs a draw n / (n - 1) (review: the formulas were checked on counts only)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

    from benchmark.metrics.bootstrap import resample_weights

    y, p = predictions(3)
    weights = resample_weights(y, 5, 0)
    assert not np.allclose(weights, np.round(weights))  # fractional indeed
    predicted = p.argmax(axis=1)
    for w in weights:
        assert weighted.accuracy(w[None], y, p)[0] == pytest.approx(
            accuracy_score(y, predicted, sample_weight=w))
        assert weighted.balanced_accuracy(w[None], y, p)[0] == pytest.approx(
            balanced_accuracy_score(y, predicted, sample_weight=w))
        assert weighted.macro_f1(w[None], y, p)[0] == pytest.approx(
            f1_score(y, predicted, average="macro", sample_weight=w))
        assert weighted.log_loss(w[None], y, p)[0] == pytest.approx(log_loss(y, p, sample_weight=w))
        aurocs = weighted.ovr_aurocs(w[None], y, p)[0]
        assert aurocs == pytest.approx([roc_auc_score(y == k, p[:, k], sample_weight=w) for k in range(3)])


def test_a_class_absent_from_a_resample_is_nan_not_zero():
    y, p = predictions(3)
    w = (y != 2).astype(float)[None]
    assert np.isnan(weighted.ovr_aurocs(w, y, p)[0, 2]) and np.isnan(weighted.macro_auroc(w, y, p)[0])
    assert np.isnan(weighted.recalls(w, y, p)[0, 2])
    assert weighted.balanced_accuracy(w, y, p)[0] == pytest.approx(
        scores.balanced_accuracy(y[y != 2], p[y != 2])
    )


def test_rates_at_a_threshold_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05])
    found = weighted.rates_at_threshold(np.ones((1, 7)), y, s, 1, 0.5)  # tp 2, fn 1, fp 1, tn 3
    assert {k: v[0] for k, v in found.items()} == pytest.approx(
        {"sensitivity": 2 / 3, "specificity": 3 / 4, "ppv": 2 / 3, "npv": 3 / 4}
    )
