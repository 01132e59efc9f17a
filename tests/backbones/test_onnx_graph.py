"""The extractor written as ONNX layer by layer computes Keras's features: every layer it writes, every
registered backbone, the classifier head on top; a layer it does not write goes to tf2onnx instead."""

from pathlib import Path

import keras
import numpy as np
import onnxruntime
import pytest
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from omegaconf import OmegaConf

from backbones.extractor import pooled_extractor
from backbones.onnx_graph import NotWritable, model_proto
from backbones.preprocess import Preprocess
from backbones.registry import build, get, names
from backbones.seeding import seed_run
from benchmark.train.engines import PARITY_TOLERANCE, runtime_on_export
from benchmark.train.head import assemble, head_layers
from tests.backbones.test_fused_batchnorm import with_statistics


def onnx_outputs(proto_or_path, pixels: np.ndarray) -> list[np.ndarray]:
    source = proto_or_path if isinstance(proto_or_path, Path) else proto_or_path.SerializeToString()
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels})


def every_layer_base() -> keras.Model:
    """One of each layer the writer knows, with the settings that could go wrong: uneven padding under
    "same" padding with stride 2, asymmetric zero padding, a depth multiplier, BatchNorm without scale,
    a capped ReLU, a three-way sum, an averaging pool whose border must not count the padding."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 1)))(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2)(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(scale=False)(x))
    x = keras.layers.SeparableConv2D(12, 3, strides=2, padding="same", depth_multiplier=2)(x)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same")(x)
    averaged = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    pointwise = keras.layers.Conv2D(12, 1, use_bias=False)(x)
    x = keras.layers.Add()([pooled, averaged, pointwise])
    halves = [keras.layers.Conv2D(6, 1)(pooled), keras.layers.Conv2D(6, 1)(averaged)]
    x = CustomScaleLayer(0.17)([x, keras.layers.Concatenate()(halves)])
    x = keras.layers.AveragePooling2D(2)(x)
    return with_statistics(keras.Model(inputs, x, name="every_layer"))


def extractor_of(base: keras.Model, preprocess_of: str) -> keras.Model:
    inputs = keras.Input(base.input_shape[1:], name="pixels")
    x = base(Preprocess(preprocess_of, name="preprocess")(inputs), training=False)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.mark.parametrize("preprocess_of", ["vgg19", "mobilenetv2", "densenet121"])  # caffe, tf, torch
def test_every_layer_it_writes_computes_what_keras_computes(preprocess_of: str):
    seed_run(0)
    base = every_layer_base()
    model = extractor_of(base, preprocess_of)
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    (features,) = onnx_outputs(model_proto(model), pixels)
    np.testing.assert_allclose(features, model.predict(pixels, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", names())
def test_every_registered_backbone_is_written_within_the_engines_tolerance(name: str):
    seed_run(0)
    spec = get(name)
    size = max(spec.min_size, 32)
    model = pooled_extractor(with_statistics(build(spec, size, None)), spec, size)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    (features,) = onnx_outputs(model_proto(model), pixels)
    expected = model.predict(pixels, verbose=0)
    assert np.abs(features - expected).max() <= PARITY_TOLERANCE * np.abs(expected).max()


def test_a_layer_it_does_not_write_goes_to_tf2onnx(tmp_path: Path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.LeakyReLU(0.3)(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(NotWritable, match="LeakyReLU"):
        model_proto(model)
    path = tmp_path / "extractor.onnx"
    first, again = (runtime_on_export("onnxruntime", model, path, threads=1)[1] for _ in range(2))
    assert first["onnx_writer"] == "tf2onnx"
    assert again == {"export_s": 0.0, "onnx_writer": None}  # kept, reused
    pixels = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(onnx_outputs(path, pixels)[0], model.predict(pixels, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_the_classifier_head_is_written_too():
    """GAP -> Dense(relu) -> Dropout -> Dense(softmax) on the extractor: `benchmark.export format=onnx`."""
    seed_run(0)
    extractor = extractor_of(every_layer_base(), "mobilenetv2")
    model = assemble(extractor, head_layers(3, OmegaConf.create({"units": 8, "dropout": 0.5})))
    pixels = np.random.default_rng(3).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    proto = model_proto(model, output="probabilities")
    assert [output.name for output in proto.graph.output] == ["probabilities"]
    (probabilities,) = onnx_outputs(proto, pixels)
    np.testing.assert_allclose(probabilities, model.predict(pixels, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        (keras.layers.Dense(4), "Dense on 4-D"),
        (keras.layers.Conv2D(4, 1, activation="softmax"), "softmax on 4-D"),
    ],
)
def test_a_dense_or_softmax_over_channels_first_maps_is_not_written(layer, reason: str):
    """Both would act on ONNX's channels-first maps over the wrong axis: refused, never written wrong."""
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(layer(inputs)))
    with pytest.raises(NotWritable, match=reason):
        model_proto(model)
