"""The head's standardisation is an exact reparametrisation: folding it away changes no prediction."""

import keras
import numpy as np
from omegaconf import OmegaConf

from benchmark.train.head import fold_standardizer, head_layers, head_on_features, standardizer


def test_folding_the_standardizer_into_dense_changes_nothing():
    rng = np.random.default_rng(0)
    features = (5.0 + 0.05 * rng.normal(size=(64, 20))).astype(np.float32)  # far from 0, tiny spread
    features[:, 3] = 1.0  # a constant feature must not divide by zero
    layers = head_layers(3, OmegaConf.create({"units": 8, "dropout": 0.5}))
    standardize = standardizer(features)
    with_layer = head_on_features(20, [standardize, *layers])
    before = with_layer.predict(features, verbose=0)
    fold_standardizer(standardize, layers[0])
    after = head_on_features(20, layers).predict(features, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-4)  # float32 rounding: mean/std is 100 here
    assert not np.allclose(before, before.mean(axis=0)), "the test needs predictions that differ"


def test_the_head_is_exactly_gap_dense_dropout_dense():
    layers = head_layers(4, OmegaConf.create({"units": 16, "dropout": 0.3}))
    assert [type(layer) for layer in layers] == [keras.layers.Dense, keras.layers.Dropout, keras.layers.Dense]
    assert layers[0].units == 16 and layers[1].rate == 0.3 and layers[2].units == 4
    assert layers[2].activation.__name__ == "softmax"
