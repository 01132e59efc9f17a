"""The node-by-node walk computes what Keras's own call computes, and recalibration through it sets the
same BatchNorm statistics as a training-mode call of the whole model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbones import batchnorm, build, get
from backbones.node_walk import walk
from backbones.seeding import seed_run


def branching_model() -> keras.Model:
    """Branches, a tensor read by three nodes, a nested model, BatchNorm, a node built with its own
    training flag (which Keras's call of the model overrides), an output that later nodes also read:
    what the walk must get right."""
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 1)(inner_in)))
    x = keras.Input((8, 8, 3))
    a = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(x))
    b = keras.layers.Conv2D(4, 1)(a)
    joined = keras.layers.Concatenate()([keras.layers.Add()([a, b]), inner(a)])
    fixed = keras.layers.BatchNormalization()(joined, training=False)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([fixed, fixed]))
    return keras.Model(x, [pooled, b])


@pytest.mark.parametrize("training", [True, False])
def test_the_walk_returns_the_keras_call_to_the_bit(training):
    seed_run(0)
    model = branching_model()
    for layer in batchnorm.batchnorm_layers(model):  # statistics a batch's own would not match
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0, np.float32))
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype(np.float32))
    expected = [y.numpy() for y in model(x, training=training)]
    walked = [y.numpy() for y in walk(model, [x], training=training)]
    assert all(np.array_equal(a, b) for a, b in zip(walked, expected, strict=True))
    assert not np.allclose(expected[0], model(x, training=not training)[0].numpy())  # the flag mattered


def test_recalibration_sets_what_a_training_call_of_the_whole_model_sets():
    spec = get("mobilenetv2")
    pixels = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3)).astype(np.float32)
    preprocessed = spec.preprocess_input(pixels)
    statistics = []
    for through_walk in (True, False):
        seed_run(3)
        model = build(spec, 32, None)
        layers = batchnorm.batchnorm_layers(model)
        momenta = [layer.momentum for layer in layers]
        if through_walk:
            assert batchnorm.recalibrate(model, preprocessed) == len(layers)
            assert [layer.momentum for layer in layers] == momenta  # restored
        else:
            for layer in layers:
                layer.momentum = 0.0
            model(tf.constant(preprocessed), training=True)
        statistics.append(np.concatenate([np.ravel(v) for layer in layers for v in
                                          (layer.moving_mean, layer.moving_variance)]))
    assert np.array_equal(*statistics)
    assert not np.allclose(statistics[0], 0.0)  # set from the images, not the placeholder zeros
