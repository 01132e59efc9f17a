"""The registry is the single source of per-backbone facts: check them against the real models."""

import importlib

import keras
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import backbones
from backbones import Preprocess
from backbones.registry import PREPROCESS_MODES, build, check_image_size, get, names, with_preprocess
from benchmark.errors import BenchmarkError
from tests.conftest import CONF


def test_the_seven_classic_backbones_are_registered():
    classic = {"mobilenetv2", "densenet121", "inceptionv3", "xception", "vgg19", "resnet50",
               "inceptionresnetv2"}
    assert classic <= set(names())


def test_config_group_and_registry_name_the_same_backbones():
    """conf/backbone/<name>.yaml exists exactly for the registry's entries, and each names its own file."""
    files = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
    assert files == sorted(names())
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in names():
            cfg = compose(config_name="config", overrides=[f"backbone={name}"])
            assert cfg.backbone.name == name and cfg.backbone.weights == "imagenet"


@pytest.mark.parametrize("name", names())
def test_pipeline_preprocessing_equals_the_models_own(name):
    """The layer inside every saved model must match the preprocess_input of the module that defines the
    backbone's constructor (looked up from the constructor itself, not from the registry's record)."""
    pixels = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    inputs = keras.Input((40, 40, 3))
    in_graph = keras.Model(inputs, Preprocess(name)(inputs)).predict(pixels.astype(np.float32), verbose=0)
    expected = importlib.import_module(get(name).constructor.__module__).preprocess_input(pixels.copy())
    np.testing.assert_allclose(in_graph, expected, atol=1e-5)


def test_preprocessing_modes_really_differ():
    """Guards the test above against passing trivially: caffe (vgg19), tf (mobilenetv2) and torch
    (densenet121) modes give different inputs."""
    pixels = np.full((1, 8, 8, 3), 200, dtype=np.uint8)
    outputs = [get(n).preprocess_input(pixels.copy()) for n in ("vgg19", "mobilenetv2", "densenet121")]
    assert len({round(float(o.mean()), 3) for o in outputs}) == 3


@pytest.mark.parametrize("name", names())
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
    for name in names():
        assert name in str(error.value)


def test_image_size_below_minimum_fails_clearly():
    with pytest.raises(BenchmarkError, match="minimum of 75"):
        check_image_size(get("inceptionv3"), 64)
    check_image_size(get("inceptionv3"), 75)


def test_preprocess_layer_round_trips_through_serialisation():
    layer = backbones.Preprocess("resnet50")
    assert keras.layers.deserialize(keras.layers.serialize(layer)).backbone == "resnet50"


@pytest.mark.parametrize("name", names())
def test_each_backbones_native_mode_names_its_own_preprocessing(name):
    """`native_preprocess` (what results print) is the mode the module's preprocess_input really uses."""
    from keras.applications import imagenet_utils

    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    own = get(name).preprocess_input(pixels.copy())
    matching = [
        m
        for m in ("caffe", "tf", "torch")
        if np.allclose(imagenet_utils.preprocess_input(pixels.copy(), mode=m), own, atol=1e-5)
    ]
    assert matching == [get(name).native_preprocess]


def test_a_preprocess_override_is_applied_in_the_layer_and_saved_with_it():
    spec = with_preprocess(get("resnet50"), "unit")
    assert spec.preprocess == "unit" and "override" in spec.preprocess_label
    assert with_preprocess(get("resnet50"), "caffe") is get("resnet50")  # its own mode is no override
    pixels = np.full((1, 4, 4, 3), 255.0, np.float32)
    layer = keras.layers.deserialize(keras.layers.serialize(Preprocess("resnet50", "caffe_255")))
    caffe = get("resnet50").preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(layer(pixels)), caffe / 255.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(Preprocess("resnet50", "unit")(pixels)), 1.0)
    assert set(PREPROCESS_MODES) >= {"caffe", "tf", "torch", "unit"}
    with pytest.raises(BenchmarkError, match="backbone.preprocess='bgr' is unknown: use one of caffe"):
        with_preprocess(get("resnet50"), "bgr")
