"""The backbone registry: the only place that knows per-backbone facts.

Importing the package stays light (no TensorFlow): `backbones.preprocess` registers the Keras layer
saved inside model files and is imported where models are built or loaded.
"""

from backbones.registry import BackboneSpec, build, get, names

__all__ = ["BackboneSpec", "Preprocess", "build", "get", "names"]


def __getattr__(name: str):
    if name == "Preprocess":  # the Keras layer, imported (with TensorFlow) only when asked for
        from backbones.preprocess import Preprocess

        return Preprocess
    raise AttributeError(f"module 'backbones' has no attribute {name!r}")
