"""Weights files: a complete file loads, a file that leaves layers at their initial values is refused."""

from pathlib import Path

import keras
import numpy as np
import pytest

from backbones.registry import build, get
from backbones.weights import VERIFY_SEED, from_file
from benchmark.errors import BenchmarkError


def saved_weights(path: Path, untouched_layer: str | None) -> Path:
    """mobilenetv2 weights that differ from the loader's initial values everywhere but `untouched_layer`
    (whose kernels a partial load would have left as initialised)."""
    keras.utils.set_random_seed(VERIFY_SEED)
    model = build(get("mobilenetv2"), 32, None)
    for layer in model.layers:
        if layer.name != untouched_layer:
            for weight in layer.weights:
                weight.assign(np.asarray(weight) + 0.01)
    model.save_weights(path)
    return path


def test_a_complete_file_loads(tmp_path: Path):
    loaded = from_file(get("mobilenetv2"), 32, saved_weights(tmp_path / "all.weights.h5", None))
    assert loaded.weights_used.startswith("file:all.weights.h5")


def test_a_file_that_loads_only_partly_is_refused(tmp_path: Path):
    path = saved_weights(tmp_path / "partial.weights.h5", untouched_layer="Conv1")
    with pytest.raises(BenchmarkError, match=r"loaded only partly: 1 of \d+ mobilenetv2 layers .*\(Conv1\)"):
        from_file(get("mobilenetv2"), 32, path)
