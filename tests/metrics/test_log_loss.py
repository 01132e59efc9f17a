"""Log loss of probabilities that went through predictions.csv: a float32 softmax read back as float64."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss

from benchmark.metrics import scores


def test_a_float32_softmax_read_back_as_float64_is_scored_without_a_warning():
    logits = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    read_back = softmax.astype(np.float64)
    assert np.abs(read_back.sum(axis=1) - 1).max() > 1e-8  # beyond scikit-learn's float64 tolerance
    labels = np.arange(200) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn: "The y_prob values do not sum to one"
        found = scores.log_loss(labels, read_back)
    assert found == pytest.approx(sklearn_log_loss(labels, softmax), rel=1e-6)
