"""The head's standardisation is an exact reparametrisation: folding it away changes no prediction."""

import keras
import numpy as np
import tensorflow as tf
from omegaconf import OmegaConf

from backbones.seeding import seed_run
from benchmark.train.head import (
    check_fold,
    feature_batches,
    fold_standardizer,
    head_layers,
    head_on_features,
    head_probabilities,
    standardizer,
)


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


def test_a_nearly_constant_large_feature_does_not_break_the_fold():
    """Mean 50, std 2e-6: with an absolute 1e-6 floor the folded logits were off by 0.8."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(64, 6)).astype(np.float32)
    features[:, 0] = (50.0 + 2e-6 * rng.normal(size=64)).astype(np.float32)
    layers = head_layers(3, OmegaConf.create({"units": 8, "dropout": 0.0}))
    standardize = standardizer(features)
    with_layer = head_on_features(6, [standardize, *layers])
    layers[0].set_weights([rng.normal(size=(6, 8)).astype(np.float32), np.zeros(8, np.float32)])
    before = with_layer.predict(features, verbose=0)
    fold_standardizer(standardize, layers[0])
    after = head_on_features(6, layers).predict(features, verbose=0)
    assert check_fold(before, after)["fold_max_difference"] < 1e-4


def test_each_epoch_is_a_new_order_of_every_row_drawn_from_the_seed_alone():
    features = np.arange(10, dtype=np.float32)[:, None]
    targets = keras.utils.to_categorical(np.arange(10) % 3, 3)

    def epochs(seed: int) -> list[list[int]]:
        rows = [int(v) for x, y in feature_batches(features, targets, 4, seed, epochs=3) for v in x[:, 0]]
        return [rows[i : i + 10] for i in range(0, 30, 10)]

    first, global_seed = epochs(1), tf.compat.v1.get_seed(None)[0]
    assert all(sorted(epoch) == list(range(10)) for epoch in first) and first[0] != first[1]
    tf.random.set_seed(123)  # TensorFlow's global seed, which other code may set, changes nothing
    try:
        assert epochs(1) == first and epochs(2) != first
    finally:
        tf.random.set_seed(global_seed)
    plain = [int(v) for x, _ in feature_batches(features, targets, 4) for v in x[:, 0]]
    assert plain == list(range(10))  # validation: in order, once


def test_head_probabilities_are_what_predict_gives_in_inference_mode():
    seed_run(0)
    head = head_on_features(6, head_layers(3, OmegaConf.create({"units": 8, "dropout": 0.5})))
    features = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    expected = head.predict(features, batch_size=4, verbose=0)
    np.testing.assert_allclose(head_probabilities(head, features), expected, atol=1e-6)
    in_chunks = head_probabilities(head, features, rows=3)
    np.testing.assert_allclose(in_chunks, head_probabilities(head, features), atol=1e-6)


def test_the_eager_validation_logs_what_kerass_evaluate_computes():
    """Early stopping reads val_loss from EagerValidation: it must be Keras's own validation loss."""
    from benchmark.train.frozen import EagerValidation

    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(96, 12)).astype(np.float32), rng.normal(size=(37, 12)).astype(np.float32)
    train_labels, val_labels = rng.integers(0, 3, 96), rng.integers(0, 3, 37)
    train_y, val_y = keras.utils.to_categorical(train_labels, 3), keras.utils.to_categorical(val_labels, 3)
    seed_run(0)
    head = head_on_features(12, head_layers(3, OmegaConf.create({"units": 8, "dropout": 0.5})))
    head.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
    history = head.fit(train, train_y, epochs=2, batch_size=16, verbose=0,
                       callbacks=[EagerValidation(val, val_labels)])
    loss, accuracy = head.evaluate(val, val_y, batch_size=16, verbose=0)  # after the last epoch
    np.testing.assert_allclose(history.history["val_loss"][-1], loss, rtol=1e-5)
    assert abs(history.history["val_accuracy"][-1] - accuracy) < 1e-6  # Keras keeps it in float32
    assert history.history["val_loss"][0] != history.history["val_loss"][1]  # each epoch's own weights
