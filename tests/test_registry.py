"""The registry is the single source of per-backbone facts: check them against the real models."""

import keras
import numpy as np
import pytest

import backbones
from backbones import Preprocess
from backbones.registry import build, check_image_size, get, names
from benchmark.errors import BenchmarkError

SEVEN = ["mobilenetv2", "densenet121", "inceptionv3", "xception", "vgg19", "resnet50", "inceptionresnetv2"]
MODULES = {
    "mobilenetv2": keras.applications.mobilenet_v2,
    "densenet121": keras.applications.densenet,
    "inceptionv3": keras.applications.inception_v3,
    "xception": keras.applications.xception,
    "vgg19": keras.applications.vgg19,
    "resnet50": keras.applications.resnet50,
    "inceptionresnetv2": keras.applications.inception_resnet_v2,
}


def test_the_seven_backbones_are_registered():
    assert names() == SEVEN


@pytest.mark.parametrize("name", SEVEN)
def test_pipeline_preprocessing_equals_the_models_own(name):
    """The layer inside every saved model must match keras.applications.<module>.preprocess_input."""
    pixels = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    inputs = keras.Input((40, 40, 3))
    in_graph = keras.Model(inputs, Preprocess(name)(inputs)).predict(pixels.astype(np.float32), verbose=0)
    expected = MODULES[name].preprocess_input(pixels.copy())
    np.testing.assert_allclose(in_graph, expected, atol=1e-5)


def test_preprocessing_modes_really_differ():
    """Guards the test above against passing trivially: caffe, tf and torch modes give different inputs."""
    pixels = np.full((1, 8, 8, 3), 200, dtype=np.uint8)
    outputs = {
        get(n).preprocess_mode: get(n).preprocess_input(pixels.copy())
        for n in ("vgg19", "mobilenetv2", "densenet121")
    }
    assert len({round(float(o.mean()), 3) for o in outputs.values()}) == 3


@pytest.mark.parametrize("name", SEVEN)
def test_metadata_matches_the_built_model(name):
    spec = get(name)
    model = build(spec, spec.min_size, None)
    layer = model.get_layer(spec.last_conv_layer)
    assert len(layer.output.shape) == 4, "the Grad-CAM layer must output a spatial feature map"
    assert spec.default_size in (224, 299) and spec.min_size in (32, 71, 75)
    assert model.output.shape[-1] == layer.output.shape[-1] or name == "vgg19"  # vgg19 ends with a pool


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(BenchmarkError) as error:
        get("resnet18")
    for name in SEVEN:
        assert name in str(error.value)


def test_image_size_below_minimum_fails_clearly():
    with pytest.raises(BenchmarkError, match="minimum of 75"):
        check_image_size(get("inceptionv3"), 64)
    check_image_size(get("inceptionv3"), 75)


def test_preprocess_layer_round_trips_through_serialisation():
    layer = backbones.Preprocess("resnet50")
    assert keras.layers.deserialize(keras.layers.serialize(layer)).backbone == "resnet50"
