"""The pooled feature extractor: raw pixels -> the backbone's own preprocessing -> frozen base -> GAP,
and the one inference graph per model that extraction, export and latency share."""

from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from backbones.fused_batchnorm import inference
from backbones.preprocess import Preprocess
from backbones.registry import BackboneSpec
from benchmark.errors import BenchmarkError

Forward = Callable[[np.ndarray], np.ndarray]  # a batch of pixels (or features) -> outputs, numpy
FORWARD_ATTRIBUTE = "_batch_free_graph"  # where a model keeps (its graph, side output); dies with it


def pooled_extractor(backbone: keras.Model, spec: BackboneSpec, image_size: int) -> keras.Model:
    """Raw RGB pixels -> preprocess_input -> frozen base -> GlobalAveragePooling2D.

    The base is called with training=False so its BatchNorm layers stay in inference mode even if
    it is unfrozen later (the keras transfer-learning guide's advice).
    """
    backbone.trainable = False
    inputs = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = Preprocess(spec.name, spec.preprocess, name="preprocess")(inputs)
    x = backbone(x, training=False)
    outputs = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_features")


def nested_base(model: keras.Model, layer_name: str) -> keras.Model:
    """The layer of `model` that is itself a model and contains `layer_name`: the backbone; a one-line
    error for a model not assembled as pixels -> backbone -> head (Grad-CAM, the side output below)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(inner.name == layer_name for inner in layer.layers):
            return layer
    raise BenchmarkError(
        f"model {model.name!r} has no nested backbone with a layer {layer_name!r}: "
        "Grad-CAM needs a classifier assembled by benchmark.head (pixels -> backbone -> head)"
    )


class Opened(NamedTuple):
    """A model taken apart at a layer inside its nested backbone: the layers before the backbone, the
    backbone as a probe returning (that layer's activations, its own output), and the layers after it."""

    before: list[keras.layers.Layer]
    probe: keras.Model
    after: list[keras.layers.Layer]


def opened_at(model: keras.Model, layer_name: str) -> Opened:
    """`model` opened at `layer_name`, for everything that needs a layer inside the backbone (the side
    output below, Grad-CAM's gradients)."""
    base = nested_base(model, layer_name)
    at = model.layers.index(base)
    before = [layer for layer in model.layers[:at] if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(base.inputs, [base.get_layer(layer_name).output, base.output])
    return Opened(before, probe, model.layers[at + 1 :])


def with_activations(
    model: keras.Model, layer_name: str
) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """x -> (model(x), the activations of `layer_name` inside the model's nested backbone): the same
    layers, called with the backbone opened at that layer (inference mode, as the extractor calls it)."""
    opened = opened_at(model, layer_name)

    def call(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        for layer in opened.before:
            x = layer(x)
        activations, x = inference(opened.probe, x)
        for layer in opened.after:
            x = layer(x)
        return x, activations

    return call


def batch_free_graph(
    model: keras.Model, side_output: str | None = None
) -> tf.types.experimental.PolymorphicFunction:
    """`model`'s inference pass as one tf.function whose batch dimension is free, made once per model.

    Keras's predict_on_batch traces the whole network again for every new batch shape: the batch-1
    latency after batch-32 extraction cost InceptionResNetV2 4.0 s and DenseNet121 2.4 s of tracing at
    128 px, and a short last batch had to be padded. One graph with a free batch dimension serves every
    batch size and ran as fast (img/s at batch 32, free vs fixed: DenseNet121 71.8 vs 69.6,
    InceptionResNetV2 51.5 vs 48.1, MobileNetV2 264 vs 274, VGG19 17.4 vs 17.6).

    `side_output`, a layer inside the nested backbone: the graph returns (outputs, that layer's
    activations). A sweep's frozen extractor returns Grad-CAM's layer this way (saliency/pool.py), so the
    activations the maps need come from the graph that extracted the features instead of a second trace
    (InceptionResNetV2: 3.7 s). Asking for a side output the kept graph lacks makes a new graph.
    BatchNorm runs as TensorFlow's fused kernel in it, or folded into the convolution before it
    (fused_batchnorm.py: fewer ops to trace and run, and convolutions Grappler can fuse with them).
    """
    kept = getattr(model, FORWARD_ATTRIBUTE, None)
    if kept is None or (side_output is not None and kept[1] != side_output):
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="pixels")]
        call = with_activations(model, side_output) if side_output else lambda x: inference(model, x)
        kept = tf.function(call, input_signature=signature, autograph=False), side_output
        object.__setattr__(model, FORWARD_ATTRIBUTE, kept)  # not a tracked Keras attribute
    return kept[0]


def batch_free_forward(model: keras.Model) -> Forward:
    """numpy batch of any size -> numpy outputs (not a side output), through `batch_free_graph`."""
    graph = batch_free_graph(model)
    with_side_output = getattr(model, FORWARD_ATTRIBUTE)[1] is not None

    def forward(batch: np.ndarray) -> np.ndarray:
        outputs = graph(tf.convert_to_tensor(batch, tf.float32))
        return (outputs[0] if with_side_output else outputs).numpy()

    return forward
