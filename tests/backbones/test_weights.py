"""Weights files: a complete file loads, a file that leaves layers at their initial values is refused."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from backbones.registry import build, get
from backbones.weights import VERIFY_SEED, from_file, keras_cached
from benchmark.errors import BenchmarkError
from tests.conftest import ROOT


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


def test_a_failed_imagenet_download_is_not_retried_in_the_same_process(tmp_path):
    """Offline, a sweep's cells must not each wait for the same failed download."""
    script = (
        "from omegaconf import OmegaConf\n"
        "from backbones.registry import get\n"
        "from backbones.weights import load_backbone\n"
        "cfg = OmegaConf.create({'weights': 'imagenet', 'weights_fallback': 'random', 'init_seed': 0})\n"
        "for name in ('mobilenetv2', 'mobilenetv2', 'resnet50'):\n"
        "    print('used:', load_backbone(get(name), 32, cfg).weights_used)\n"
    )
    env = {
        **os.environ,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "KERAS_HOME": str(tmp_path / "keras_home"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("used: random (imagenet unavailable)") == 3
    log = result.stdout + result.stderr
    assert log.count("not retried") == 2  # the first attempt failed; the next two never tried again


def test_a_backbone_in_keras_cache_is_recognised(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    assert not keras_cached(get("mobilenetv2"))
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").touch()
    assert keras_cached(get("mobilenetv2")) and not keras_cached(get("inceptionresnetv2"))
