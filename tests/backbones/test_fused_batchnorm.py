"""The fused inference pass computes what Keras's own call computes, with fewer graph ops, folds a
BatchNorm's neighbouring convolution only where nothing else reads it, and leaves alone what the fused
kernel would compute differently."""

import keras
import numpy as np
import tensorflow as tf

from backbones import batchnorm
from backbones.fused_batchnorm import foldable, inference
from backbones.seeding import seed_run
from tests.backbones.test_batchnorm import branching_model


def with_statistics(model: keras.Model) -> keras.Model:
    """Moving statistics, scales and offsets that differ per channel, so a swapped or dropped one shows."""
    rng = np.random.default_rng(1)
    for layer in batchnorm.batchnorm_layers(model):
        channels = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0.0, 0.5, channels).astype(np.float32))
        layer.moving_variance.assign(rng.uniform(0.3, 3.0, channels).astype(np.float32))
        if layer.scale:
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        if layer.center:
            layer.beta.assign(rng.normal(0.0, 0.2, channels).astype(np.float32))
    return model


def graph_of(call, x: tf.Tensor) -> tf.types.experimental.ConcreteFunction:
    return tf.function(call, autograph=False).get_concrete_function(tf.TensorSpec(x.shape, x.dtype))


def op_types(concrete: tf.types.experimental.ConcreteFunction) -> list[str]:
    return [op.type for op in concrete.graph.get_operations()]


def test_the_fused_pass_matches_keras_with_fewer_ops():
    seed_run(0)
    model = with_statistics(branching_model())  # nested model, branches, a node with its own training flag
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype(np.float32))
    expected = [y.numpy() for y in model(x, training=False)]
    keras_graph = graph_of(lambda t: model(t, training=False), x)
    fused_graph = graph_of(lambda t: inference(model, t), x)
    fused = [y.numpy() for y in fused_graph(x)]
    for got, want in zip(fused, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert op_types(fused_graph).count("FusedBatchNormV3") == 3  # the nested model's BatchNorm too
    assert len(op_types(fused_graph)) < len(op_types(keras_graph))


def test_scale_and_center_off_are_fused_as_keras_computes_them():
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.BatchNormalization(scale=False)(inputs)  # InceptionV3's BatchNorm
    x = keras.layers.BatchNormalization(center=False, epsilon=1e-6)(x)  # below tf.compat.v1's floor
    model = with_statistics(keras.Model(inputs, x))
    pixels = tf.constant(np.random.default_rng(2).normal(size=(3, 6, 6, 4)).astype(np.float32))
    np.testing.assert_allclose(graph_of(lambda t: inference(model, t), pixels)(pixels).numpy(),
                               model(pixels, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_what_the_kernel_does_not_cover_runs_as_keras_runs_it():
    inputs = keras.Input((5,))
    model = with_statistics(keras.Model(inputs, keras.layers.BatchNormalization()(inputs)))  # 2-D: not fused
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32))
    concrete = graph_of(lambda t: inference(model, t), x)
    assert "FusedBatchNormV3" not in op_types(concrete)
    np.testing.assert_allclose(concrete(x).numpy(), model(x, training=False).numpy(), rtol=1e-6, atol=1e-7)


def test_a_convolution_folds_into_its_batchnorm_only_where_nothing_else_reads_it():
    """A biased Conv2D's bias goes into the BatchNorm's mean, a BatchNorm after a DepthwiseConv2D into
    its kernel (depth multiplier 2: the channel order matters); not where another layer or the model's
    output reads the convolution too."""
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # biased, read by its BatchNorm only: folds
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)  # folds, with its bias
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(scale=False)(x))
    read_twice = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.Add()([keras.layers.BatchNormalization()(read_twice), read_twice])
    also_output = keras.layers.Conv2D(8, 1)(x)
    last = keras.layers.BatchNormalization()(also_output)
    model = with_statistics(keras.Model(inputs, [last, also_output]))
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if getattr(layer, "use_bias", False):
            layer.bias.assign(rng.normal(0.0, 0.5, layer.bias.shape).astype(np.float32))
    folds = foldable(model)
    assert [len(folds.bias_into), len(folds.into_depthwise)] == [1, 1]
    pixels = tf.constant(rng.normal(size=(3, 8, 8, 4)).astype(np.float32))
    concrete = graph_of(lambda t: inference(model, t), pixels)
    for got, want in zip(concrete(pixels), model(pixels, training=False), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    assert op_types(concrete).count("FusedBatchNormV3") == 3  # the depthwise's BatchNorm is in its kernel


def test_a_convolution_in_float16_keeps_its_bias():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, dtype="mixed_float16")(inputs)  # its output would not be fused
    assert foldable(keras.Model(inputs, keras.layers.BatchNormalization()(x))) == ({}, {})
