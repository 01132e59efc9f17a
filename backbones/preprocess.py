"""A Keras layer that applies a backbone's own preprocess_input inside the saved model.

Putting preprocessing in the graph means `model.keras` takes raw 0-255 RGB pixels, so prediction can
never apply a different preprocessing than training did.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="backbones")
class Preprocess(keras.layers.Layer):
    """Raw RGB pixels in [0, 255] -> the input the named backbone was trained on."""

    def __init__(self, backbone: str, mode: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.mode = mode  # backbone.preprocess: None = the backbone's own preprocess_input

    def call(self, inputs):
        from backbones.registry import get, with_preprocess  # late: the registry imports keras.applications

        return with_preprocess(get(self.backbone), self.mode).preprocess_input(ops.cast(inputs, "float32"))

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone": self.backbone, "mode": self.mode}
