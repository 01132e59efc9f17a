"""A model's inference pass with each BatchNormalization fused: into TensorFlow's fused kernel, or into the
depthwise convolution before it.

Keras 3 computes an inference BatchNorm as separate graph ops (tf.nn.batch_normalization: a reciprocal
square root, products and sums over the activations); Keras 2 called TensorFlow's fused kernel
(FusedBatchNormV3) and Keras 3 dropped that path. The frozen extraction traces the whole backbone once per
model, and tracing, Grappler's passes and the first call cost per graph op: with the fused kernel the
graphs have 34-52 % fewer ops (DenseNet121 1707 instead of 3522), and the first batch of 32 at 128 px,
trace included, cost 0.4-2.8 s less per backbone (InceptionResNetV2 4.7-5.4 s instead of 7.0-8.1 s).

Grappler then fuses a convolution, the fused BatchNorm after it and a ReLU into one oneDNN kernel, but
only a convolution without bias, and no depthwise one. So two more rewrites, exact in algebra: a biased
Conv2D whose only reader is a BatchNorm runs without its bias, which the BatchNorm's mean absorbs
(ResNet50), and a BatchNorm after a DepthwiseConv2D is folded into its kernel and a bias (MobileNetV2).
Measured at batch 32, 128 px, old and new graph in turn: ResNet50 88.0-89.1 -> 105.2-106.9 img/s,
MobileNetV2 377.6-389.8 -> 541.2-553.4 img/s (README, "How the frozen mode stays fast and honest").
Folding the BatchNorm into a plain convolution too was slower (InceptionV3 0.95x, Xception 0.65x), so it
is not done. The same numbers to float rounding: features within 5.0e-7 (relative) of the graph before,
3.9e-7 of Keras's own call.
"""

from typing import Any, NamedTuple

import keras
import tensorflow as tf

from backbones.node_walk import layer_nodes, readers, walk


class Folds(NamedTuple):
    """The BatchNorms of one functional model that absorb a neighbour, keyed by the layer's id."""

    bias_into: dict[int, keras.layers.Conv2D]  # BatchNorm -> the biased Conv2D whose bias its mean takes
    into_depthwise: dict[int, keras.layers.BatchNormalization]  # DepthwiseConv2D -> the BatchNorm it takes


def inference(model: keras.Model, inputs: Any) -> Any:
    """`model(inputs, training=False)`, every fusable BatchNorm in it (nested models included) fused."""
    return keras.tree.pack_sequence_as(model.output, fused_walk(model, keras.tree.flatten(inputs)))


def fused_walk(model: keras.Model, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
    """The node walk of `model` with each layer called by `call` below."""
    folds = foldable(model)
    skipped = {id(batchnorm) for batchnorm in folds.into_depthwise.values()}
    unbiased = {id(conv) for conv in folds.bias_into.values()}

    def call(operation: keras.Operation, args: tuple, kwargs: dict) -> Any:
        """A nested functional model is walked too; a BatchNorm fuses as `folds` says or into the fused
        kernel; anything else runs as Keras calls it."""
        if isinstance(operation, keras.Model) and hasattr(operation, "_nodes_by_depth"):  # functional
            return fused_walk(operation, keras.tree.flatten(args))
        if id(operation) in folds.into_depthwise and fusable_input(args[0]):
            return depthwise_with_batchnorm(operation, folds.into_depthwise[id(operation)], args[0])
        if id(operation) in skipped and fusable_input(args[0]):
            return args[0]  # folded into the depthwise convolution before it
        if id(operation) in unbiased and fusable_input(args[0]):
            return operation.convolution_op(args[0], operation.kernel)  # the BatchNorm after adds the bias
        if fusable(operation, args, kwargs):
            bias = folds.bias_into.get(id(operation))
            return fused_batchnorm(operation, args[0], bias.bias if bias is not None else None)
        return operation(*args, **kwargs)

    return walk(model, inputs, False, call)


def foldable(model: keras.Model) -> Folds:
    """The pairs (biased Conv2D or DepthwiseConv2D -> BatchNorm) of `model` where the BatchNorm alone
    reads the convolution's output, which is no output of the model, and each layer is called once."""
    nodes = layer_nodes(model)
    reads = readers(model, nodes)
    folds = Folds({}, {})
    for node in nodes:
        batchnorm = node.operation
        called_once = len(getattr(batchnorm, "_inbound_nodes", ())) == 1
        if not (plain_batchnorm(batchnorm) and called_once and len(node.input_tensors) == 1):
            continue
        x = node.input_tensors[0]
        producer = x._keras_history.operation
        if reads[id(x)] != 1 or not single_linear_call(producer):
            continue
        if type(producer) is keras.layers.Conv2D and producer.use_bias:
            folds.bias_into[id(batchnorm)] = producer
        elif type(producer) is keras.layers.DepthwiseConv2D:
            folds.into_depthwise[id(producer)] = batchnorm
    return folds


def single_linear_call(layer: Any) -> bool:
    """A layer called at one node only, in float32 (so its output is fusable when its input is),
    channels last, with no activation of its own."""
    return (
        len(getattr(layer, "_inbound_nodes", ())) == 1
        and getattr(layer, "compute_dtype", None) == "float32"
        and getattr(layer, "activation", None) is keras.activations.linear
        and getattr(layer, "data_format", None) == "channels_last"
    )


def plain_batchnorm(layer: Any) -> bool:
    """A BatchNormalization the fused kernel computes exactly as Keras: no subclass, no renormalisation,
    over the last axis, in float32."""
    return (
        type(layer) is keras.layers.BatchNormalization
        and not layer.renorm
        and layer.axis in (-1, 3)
        and layer.compute_dtype == "float32"
    )


def fusable_input(x: Any) -> bool:
    return len(x.shape) == 4 and x.dtype == tf.float32


def fusable(layer: keras.Operation, args: tuple, kwargs: dict) -> bool:
    """A plain BatchNorm called on one 4-D float32 input without a mask."""
    return (
        plain_batchnorm(layer)
        and len(args) == 1
        and set(kwargs) <= {"training", "mask"}
        and kwargs.get("mask") is None
        and fusable_input(args[0])
    )


def scale_and_offset(layer: keras.layers.BatchNormalization) -> tuple[tf.Tensor, tf.Tensor]:
    channels = layer.moving_mean.shape[0]
    scale = layer.gamma.value if layer.scale else tf.ones([channels], tf.float32)
    offset = layer.beta.value if layer.center else tf.zeros([channels], tf.float32)
    return scale, offset


def fused_batchnorm(
    layer: keras.layers.BatchNormalization, x: tf.Tensor, bias: keras.Variable | None = None
) -> tf.Tensor:
    """(x + bias - moving mean) / sqrt(moving variance + epsilon) * gamma + beta, as one op (no epsilon
    floor, unlike tf.compat.v1.nn.fused_batch_norm's); `bias`: the convolution's before it, if it was
    left out there."""
    scale, offset = scale_and_offset(layer)
    mean = layer.moving_mean.value if bias is None else layer.moving_mean.value - bias.value
    return tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=mean, variance=layer.moving_variance.value,
        epsilon=layer.epsilon, is_training=False,
    )[0]


def depthwise_with_batchnorm(
    conv: keras.layers.DepthwiseConv2D, batchnorm: keras.layers.BatchNormalization, x: tf.Tensor
) -> tf.Tensor:
    """batchnorm(conv(x)) as one depthwise convolution: its kernel times the BatchNorm's per-channel
    factor, then a bias (computed in the graph from the variables, so it follows their values)."""
    scale, offset = scale_and_offset(batchnorm)
    factor = scale * tf.math.rsqrt(batchnorm.moving_variance.value + batchnorm.epsilon)
    bias = conv.bias.value if conv.use_bias else 0.0
    kernel = conv.kernel.value * tf.reshape(factor, (1, 1, -1, conv.depth_multiplier))
    y = keras.ops.depthwise_conv(
        x, kernel, strides=conv.strides, padding=conv.padding, dilation_rate=conv.dilation_rate,
        data_format=conv.data_format,
    )
    return tf.nn.bias_add(y, offset + (bias - batchnorm.moving_mean.value) * factor)
