"""The backbone registry: the only place that knows per-backbone facts."""

from backbones.preprocess import Preprocess
from backbones.registry import BackboneSpec, build, get, names

__all__ = ["BackboneSpec", "Preprocess", "build", "get", "names"]
