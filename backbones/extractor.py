"""The pooled feature extractor: raw pixels -> the backbone's own preprocessing -> frozen base -> GAP."""

import keras

from backbones.preprocess import Preprocess
from backbones.registry import BackboneSpec


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
