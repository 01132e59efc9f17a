"""One metadata record per keras.applications backbone; lookups go through `get` only.

Each backbone ships its own `preprocess_input` (caffe: BGR minus ImageNet mean; tf: scale to [-1, 1];
torch: scale to [0, 1] then ImageNet mean/std). Mixing them up silently ruins transfer learning, so the
record carries the model module's own function and nothing else in the code branches on a backbone name.
"""

import importlib
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from benchmark.errors import BenchmarkError

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class BackboneSpec:
    """Per-backbone facts: constructor, preprocessing, input sizes, the Grad-CAM layer, BatchNorm.

    The keras.applications module is named, not imported: looking a backbone up (resume checks, the
    sweep's progress line) must not cost TensorFlow's start-up; the module is imported on first use."""

    name: str
    module_name: str  # e.g. "keras.applications.mobilenet_v2"
    constructor_name: str  # e.g. "MobileNetV2"
    default_size: int
    min_size: int
    last_conv_layer: str
    native_preprocess: str  # the mode of the module's own preprocess_input (PREPROCESS_MODES)
    batchnorm: bool = True  # has BatchNorm layers (a random init needs their statistics recalibrated)
    preprocess: str | None = None  # backbone.preprocess: another mode, for weights trained with it

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    @property
    def constructor(self) -> Any:
        return getattr(self.module, self.constructor_name)

    def preprocess_input(self, x):
        """The model module's own preprocess_input, or the override's (numpy arrays or tensors)."""
        if self.preprocess is None:
            return self.module.preprocess_input(x)
        return preprocess_with(self.preprocess, x)

    @property
    def preprocess_label(self) -> str:
        """What results and model cards say about the preprocessing."""
        if self.preprocess is None:
            return f"{self.native_preprocess} ({self.module_name}.preprocess_input)"
        own = f"{self.name}'s own is {self.native_preprocess}"
        return f"{self.preprocess} (backbone.preprocess override; {own})"


# RGB pixels in [0, 255] -> network input. caffe: BGR minus the ImageNet mean; tf: [-1, 1]; torch: [0, 1]
# minus the ImageNet mean over its std; unit: [0, 1]; caffe_255: caffe then /255, which is what
# RadImageNet's published training script feeds its weights (ImageDataGenerator applies
# imagenet_utils.preprocess_input before rescale=1/255).
PREPROCESS_MODES = ("caffe", "tf", "torch", "unit", "caffe_255")


def preprocess_with(mode: str, x):
    from keras.applications import imagenet_utils

    if mode == "unit":
        return x / 255.0
    if mode == "caffe_255":
        return imagenet_utils.preprocess_input(x, mode="caffe") / 255.0
    return imagenet_utils.preprocess_input(x, mode=mode)


def with_preprocess(spec: BackboneSpec, mode: str | None) -> BackboneSpec:
    """The spec with `backbone.preprocess` applied (null: the backbone's own); unknown modes refused."""
    if mode is None or mode == spec.native_preprocess:
        return spec
    if mode not in PREPROCESS_MODES:
        raise BenchmarkError(
            f"backbone.preprocess={mode!r} is unknown: use one of {', '.join(PREPROCESS_MODES)}, "
            "or null for the backbone's own"
        )
    return replace(spec, preprocess=mode)


_APPS = "keras.applications."
_SPECS = (
    BackboneSpec("mobilenetv2", _APPS + "mobilenet_v2", "MobileNetV2", 224, 32, "out_relu", "tf"),
    BackboneSpec("densenet121", _APPS + "densenet", "DenseNet121", 224, 32, "relu", "torch"),
    BackboneSpec("inceptionv3", _APPS + "inception_v3", "InceptionV3", 299, 75, "mixed10", "tf"),
    BackboneSpec("xception", _APPS + "xception", "Xception", 299, 71, "block14_sepconv2_act", "tf"),
    BackboneSpec("vgg19", _APPS + "vgg19", "VGG19", 224, 32, "block5_conv4", "caffe", batchnorm=False),
    BackboneSpec("resnet50", _APPS + "resnet50", "ResNet50", 224, 32, "conv5_block3_out", "caffe"),
    BackboneSpec(
        "inceptionresnetv2", _APPS + "inception_resnet_v2", "InceptionResNetV2", 299, 75, "conv_7b_ac", "tf"
    ),
)
_REGISTRY = {spec.name: spec for spec in _SPECS}


def names() -> list[str]:
    """Every registered backbone name, in the order of the leaderboard's default sweep."""
    return list(_REGISTRY)


def get(name: str) -> BackboneSpec:
    """The spec for `name`; an unknown name fails listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BenchmarkError(
            f"unknown backbone {name!r}: choose one of {', '.join(names())} (e.g. backbone=mobilenetv2)"
        ) from None


def check_image_size(spec: BackboneSpec, image_size: int) -> None:
    """Refuse sizes the architecture cannot take, before any work is done."""
    if image_size < spec.min_size:
        raise BenchmarkError(
            f"image_size={image_size} is below {spec.name}'s minimum of {spec.min_size}: "
            f"set image_size>={spec.min_size} (its default is {spec.default_size})"
        )


def build(spec: BackboneSpec, image_size: int, weights: str | None) -> "keras.Model":
    """The convolutional base without its ImageNet classifier (include_top=False, no pooling).

    `weights` is passed to keras as is: "imagenet", None (random init) or a weights-file path.
    """
    check_image_size(spec, image_size)
    return spec.constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
