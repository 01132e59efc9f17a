"""The frozen extractor, or a classifier on it, as ONNX, written layer by layer from its Keras graph.

tf2onnx converts the traced TensorFlow graph instead: it freezes the variables into constants, runs
Grappler, converts op by op and runs ~36 optimisers, each of which first writes every node back into its
protobuf, the weights included. On 2 cores that cost 1.4-28 s per backbone at 128 px
(InceptionResNetV2: 33 s, 11 s of it copying weight tensors), more than ONNX Runtime's faster forward
saves on a few thousand images, so `runtime.engine=auto` stayed on TensorFlow. The layers of the seven
registered backbones map one to one onto ONNX operators, and their weights are arrays already: written
directly, an export costs well under a second (README, "Extraction engines"). The graph runs channels
first (ONNX's convolution layout): one transpose of the pixels in, none inside. BatchNorm stays a
BatchNormalization node, which ONNX Runtime folds into the convolution before it.

A layer this module does not know, or one configured beyond what it writes, raises NotWritable and the
caller falls back to tf2onnx; the engine's parity check against Keras stands behind either file.
"""

from collections.abc import Callable
from itertools import count

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from backbones.fused_batchnorm import plain_batchnorm, scale_and_offset
from backbones.node_walk import layer_nodes
from backbones.preprocess import Preprocess

OPSET = 17  # ONNX Runtime >= 1.13 and OpenVINO >= 2022.3 read it
TO_CHANNELS_FIRST = (0, 3, 1, 2)


class NotWritable(Exception):
    """The model has a layer (or a setting of one) this module does not write; use tf2onnx."""


class Graph:
    """The ONNX nodes and initialisers written so far, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._ids = count()

    def name(self, hint: str) -> str:
        return f"{hint}_{next(self._ids)}"

    def constant(self, hint: str, value: np.ndarray, dtype: type = np.float32) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attributes) -> str:
        output = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output


Writer = Callable[[Graph, keras.layers.Layer, list[str], list[tuple]], str]


def model_proto(model: keras.Model, output: str = "features") -> onnx.ModelProto:
    """`model` (pixels NHWC -> one vector per image: pooled features, or a classifier's probabilities),
    its inference pass as ONNX: input "pixels", output named `output`."""
    shape = model.input_shape
    if len(shape) != 4 or None in shape[1:]:
        raise NotWritable(f"input shape {shape}: a fixed NHWC image shape is needed")
    if len(model.outputs) != 1 or len(model.output_shape) != 2:
        raise NotWritable(f"output shape {model.output_shape}: one (batch, channels) output expected")
    graph = Graph()
    pixels = graph.op("Transpose", ["pixels"], "nchw", perm=TO_CHANNELS_FIRST)
    (result,) = write_model(graph, model, [pixels])
    graph.nodes.append(helper.make_node("Identity", [result], [output], name=output))
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, model.output_shape[1]])]
    inputs = [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, *shape[1:]])]
    written = helper.make_graph(graph.nodes, model.name, inputs, outputs, graph.initializers)
    return helper.make_model(
        written, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="medbench"
    )


def write_model(graph: Graph, model: keras.Model, inputs: list[str]) -> list[str]:
    """The ONNX names of `model`'s outputs given its inputs' names (channels first); nested functional
    models are written in place."""
    if not hasattr(model, "_nodes_by_depth"):
        raise NotWritable(f"{type(model).__name__} {model.name!r} is not a functional model")
    names = {id(x): name for x, name in zip(model.inputs, inputs, strict=True)}
    for node in layer_nodes(model):
        layer = node.operation
        args = [names[id(x)] for x in node.input_tensors]
        shapes = [tuple(x.shape) for x in node.input_tensors]
        if isinstance(layer, keras.Model):
            outputs = write_model(graph, layer, args)
        else:
            outputs = [write_layer(graph, layer, args, shapes)]
        names.update((id(x), name) for x, name in zip(node.outputs, outputs, strict=True))
    return [names[id(x)] for x in model.outputs]


def write_layer(graph: Graph, layer: keras.layers.Layer, inputs: list[str], shapes: list[tuple]) -> str:
    if getattr(layer, "compute_dtype", "float32") != "float32":
        raise NotWritable(f"layer {layer.name!r} computes in {layer.compute_dtype}, not float32")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise NotWritable(f"layer {layer.name!r} is {layer.data_format}")
    writer = WRITERS.get(type(layer))
    if writer is None:
        raise NotWritable(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX writer here")
    return writer(graph, layer, inputs, shapes)


def same_pads(size: tuple, kernel: tuple, strides: tuple, dilation: tuple) -> list[int]:
    """TensorFlow's "same" padding as ONNX pads [top, left, bottom, right]: the odd pixel goes after."""
    before, after = [], []
    for n, k, s, d in zip(size, kernel, strides, dilation, strict=True):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


def window(layer, shape: tuple, kernel: tuple, dilation: tuple = (1, 1)) -> dict:
    """The Conv/pool attributes for `layer`'s strides and padding on an input of NHWC `shape`."""
    strides = tuple(layer.strides)
    if layer.padding == "valid":
        pads = [0, 0, 0, 0]
    elif layer.padding == "same":
        pads = same_pads(shape[1:3], kernel, strides, dilation)
    else:
        raise NotWritable(f"layer {layer.name!r}: padding {layer.padding!r}")
    return {"kernel_shape": list(kernel), "strides": list(strides), **({"pads": pads} if any(pads) else {})}


def activation(graph: Graph, layer, x: str, rank: int = 4) -> str:
    """The layer's own activation after it: linear, relu, or (over the last axis of a (batch, classes)
    tensor, a classifier's output) softmax."""
    if layer.activation is keras.activations.linear:
        return x
    if layer.activation is keras.activations.relu:
        return graph.op("Relu", [x], f"{layer.name}_relu")
    if layer.activation is keras.activations.softmax and rank == 2:
        return graph.op("Softmax", [x], f"{layer.name}_softmax", axis=-1)
    raise NotWritable(f"layer {layer.name!r}: activation {layer.activation.__name__} on {rank}-D tensors")


def convolution(graph: Graph, layer, x: str, shape: tuple, kernel: np.ndarray, group: int) -> str:
    """An ONNX Conv of `x` with a kernel already in ONNX's (out, in / group, h, w) layout, then the
    layer's bias."""
    dilation = tuple(layer.dilation_rate)
    inputs = [x, graph.constant(f"{layer.name}_kernel", kernel)]
    if layer.use_bias:
        inputs.append(graph.constant(f"{layer.name}_bias", layer.bias.numpy()))
    attributes = window(layer, shape, kernel.shape[2:], dilation)
    return graph.op("Conv", inputs, layer.name, group=group, dilations=list(dilation), **attributes)


def conv2d(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    kernel = np.transpose(layer.kernel.numpy(), (3, 2, 0, 1))  # (h, w, in, out) -> (out, in, h, w)
    return activation(graph, layer, convolution(graph, layer, inputs[0], shapes[0], kernel, layer.groups))


def depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """(h, w, channels, multiplier) -> (channels * multiplier, 1, h, w): TensorFlow's output channel
    c * multiplier + m is ONNX's group c, its m-th output."""
    h, w, channels, multiplier = kernel.shape
    return np.transpose(kernel.reshape(h, w, channels * multiplier), (2, 0, 1))[:, None]


def depthwise_conv2d(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    kernel = depthwise_kernel(layer.kernel.numpy())
    y = convolution(graph, layer, inputs[0], shapes[0], kernel, group=shapes[0][-1])
    return activation(graph, layer, y)


def separable_conv2d(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    """The depthwise convolution with the layer's strides and padding, then the pointwise one."""
    depthwise = depthwise_kernel(layer.depthwise_kernel.numpy())
    dilation = list(layer.dilation_rate)
    x = graph.op(
        "Conv", [inputs[0], graph.constant(f"{layer.name}_depthwise", depthwise)], f"{layer.name}_dw",
        group=shapes[0][-1], dilations=dilation, **window(layer, shapes[0], depthwise.shape[2:], dilation),
    )
    pointwise = np.transpose(layer.pointwise_kernel.numpy(), (3, 2, 0, 1))
    weights = [x, graph.constant(f"{layer.name}_pointwise", pointwise)]
    if layer.use_bias:
        weights.append(graph.constant(f"{layer.name}_bias", layer.bias.numpy()))
    return activation(graph, layer, graph.op("Conv", weights, layer.name, kernel_shape=[1, 1]))


def batch_normalization(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    """The same BatchNorms and the same scale and offset as the fused kernel's (fused_batchnorm.py)."""
    if not plain_batchnorm(layer) or len(shapes[0]) != 4:
        raise NotWritable(f"layer {layer.name!r}: BatchNorm over axis {layer.axis}, with renorm, or not 4-D")
    gamma, beta = (keras.ops.convert_to_numpy(v) for v in scale_and_offset(layer))
    weights = [gamma, beta, layer.moving_mean.numpy(), layer.moving_variance.numpy()]
    names = [graph.constant(f"{layer.name}_{part}", w) for part, w in zip("sbmv", weights, strict=True)]
    return graph.op("BatchNormalization", [inputs[0], *names], layer.name, epsilon=float(layer.epsilon))


def relu(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
        raise NotWritable(f"layer {layer.name!r}: leaky or thresholded ReLU")
    if layer.max_value is None:
        return graph.op("Relu", inputs, layer.name)
    bounds = [graph.constant(f"{layer.name}_min", np.array(0.0)),
              graph.constant(f"{layer.name}_max", np.array(float(layer.max_value)))]
    return graph.op("Clip", [inputs[0], *bounds], layer.name)


def activation_layer(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    return activation(graph, layer, inputs[0], len(shapes[0]))


def dense(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    """A Dense layer on (batch, features), the head after pooling: one Gemm, then its activation."""
    if len(shapes[0]) != 2 or layer.lora_enabled or layer.quantization_mode is not None:
        raise NotWritable(f"layer {layer.name!r}: Dense on {len(shapes[0])}-D input, LoRA or quantised")
    weights = [inputs[0], graph.constant(f"{layer.name}_kernel", layer.kernel.numpy())]
    if layer.use_bias:
        weights.append(graph.constant(f"{layer.name}_bias", layer.bias.numpy()))
    return activation(graph, layer, graph.op("Gemm", weights, layer.name), rank=2)


def dropout(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    return inputs[0]  # the identity at inference


def zero_padding(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    (top, bottom), (left, right) = layer.padding
    pads = graph.constant(f"{layer.name}_pads", np.array([0, 0, top, left, 0, 0, bottom, right]), np.int64)
    return graph.op("Pad", [inputs[0], pads], layer.name)


def pooling(op_type: str) -> Writer:
    def write(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
        attributes = window(layer, shapes[0], tuple(layer.pool_size))
        if op_type == "AveragePool":
            attributes["count_include_pad"] = 0  # TensorFlow's "same" average leaves the padding out
        return graph.op(op_type, inputs, layer.name, **attributes)

    return write


def concatenate(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    if layer.axis not in (-1, len(shapes[0]) - 1):
        raise NotWritable(f"layer {layer.name!r}: concatenation over axis {layer.axis}")
    return graph.op("Concat", inputs, layer.name, axis=1)


def add(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    """Add for two inputs: ONNX Runtime fuses it into the convolution before it, Sum it leaves alone."""
    return graph.op("Add" if len(inputs) == 2 else "Sum", inputs[::-1], layer.name)


def scaled_residual(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    """InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale."""
    scale = np.full((shapes[1][-1], 1, 1), layer.scale)  # per channel: ONNX Runtime folds it into the conv
    scaled = graph.op("Mul", [inputs[1], graph.constant(f"{layer.name}_scale", scale)], f"{layer.name}_mul")
    return graph.op("Add", [inputs[0], scaled], layer.name)


def global_average(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    if getattr(layer, "keepdims", False):
        raise NotWritable(f"layer {layer.name!r}: keepdims")
    return graph.op("Flatten", [graph.op("GlobalAveragePool", inputs, f"{layer.name}_pool")], layer.name)


def preprocess(graph: Graph, layer, inputs: list[str], shapes: list[tuple]) -> str:
    """Every preprocess_input mode is per-pixel affine in the channels (a flip, an offset, a scale): read
    its matrix and offset off the layer itself and check them on random pixels. A scaled permutation
    (every mode we know) is written as a channel gather, a product and a sum, which cost nothing next
    to the backbone; anything else affine as a 1x1 convolution."""
    probes = np.zeros((4, 1, 1, 3), np.float32)
    probes[1:, 0, 0] = np.eye(3, dtype=np.float32) * 255.0
    out = keras.ops.convert_to_numpy(layer(probes))[:, 0, 0].astype(np.float64)
    offset, matrix = out[0], (out[1:] - out[0]).T / 255.0  # matrix[o, i]: output o per unit of input i
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(layer(pixels)).astype(np.float64)
    if not np.allclose(pixels.astype(np.float64) @ matrix.T + offset, expected, rtol=1e-5, atol=1e-5):
        raise NotWritable(f"layer {layer.name!r}: preprocessing not affine in the channels")
    source = np.argmax(np.abs(matrix), axis=1)
    scale = matrix[np.arange(3), source]
    if np.count_nonzero(matrix) != 3 or len(set(source)) != 3:
        kernel = graph.constant(f"{layer.name}_matrix", matrix.reshape(3, 3, 1, 1))
        offset_name = graph.constant(f"{layer.name}_offset", offset)
        return graph.op("Conv", [inputs[0], kernel, offset_name], layer.name, kernel_shape=[1, 1])
    x = inputs[0]
    if list(source) != [0, 1, 2]:
        indices = graph.constant(f"{layer.name}_channels", source, np.int64)
        x = graph.op("Gather", [x, indices], f"{layer.name}_gather", axis=1)
    scale_name = graph.constant(f"{layer.name}_scale", scale.reshape(1, 3, 1, 1))
    x = graph.op("Mul", [x, scale_name], f"{layer.name}_mul")
    offset_name = graph.constant(f"{layer.name}_offset", offset.reshape(1, 3, 1, 1))
    return graph.op("Add", [x, offset_name], layer.name)


def _custom_scale_layer() -> type:
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    return CustomScaleLayer


WRITERS: dict[type, Writer] = {
    keras.layers.Conv2D: conv2d,
    keras.layers.DepthwiseConv2D: depthwise_conv2d,
    keras.layers.SeparableConv2D: separable_conv2d,
    keras.layers.BatchNormalization: batch_normalization,
    keras.layers.ReLU: relu,
    keras.layers.Activation: activation_layer,
    keras.layers.ZeroPadding2D: zero_padding,
    keras.layers.MaxPooling2D: pooling("MaxPool"),
    keras.layers.AveragePooling2D: pooling("AveragePool"),
    keras.layers.Concatenate: concatenate,
    keras.layers.Add: add,
    keras.layers.GlobalAveragePooling2D: global_average,
    keras.layers.Dense: dense,
    keras.layers.Dropout: dropout,
    Preprocess: preprocess,
    _custom_scale_layer(): scaled_residual,
}
