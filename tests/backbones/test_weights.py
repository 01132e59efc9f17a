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


@pytest.mark.parametrize("name", ["cut.weights.h5", "cut.h5"])
def test_a_truncated_file_is_called_truncated_not_another_architecture(tmp_path: Path, name: str):
    whole = saved_weights(tmp_path / "whole.weights.h5", None)
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # an interrupted download or copy
    told = r"is truncated or corrupt \(.*truncated file.*\): download it again"
    with pytest.raises(BenchmarkError, match=told) as raised:
        from_file(get("mobilenetv2"), 32, cut)
    assert "does not fit" not in str(raised.value) and "include_top" not in str(raised.value)


def cut_short(data: bytes) -> bytes:
    return data[: len(data) // 2]  # an interrupted download or copy


def zeroed_inside(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(64) + data[middle + 64 :]  # a bad disk or copy: the length unchanged


@pytest.mark.parametrize(("damage", "told"), [(cut_short, "not a zip file"), (zeroed_inside, "bad CRC-32")])
def test_a_damaged_keras_archive_is_called_corrupt_in_one_line(tmp_path: Path, damage, told: str):
    """zipfile's BadZipFile came out of Keras's loader as a traceback."""
    keras.utils.set_random_seed(VERIFY_SEED + 1)  # values the loader's initial ones are not
    whole = tmp_path / "whole.keras"
    build(get("mobilenetv2"), 32, None).save(whole)
    assert from_file(get("mobilenetv2"), 32, whole).weights_used.startswith("file:whole.keras")  # intact
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(damage(whole.read_bytes()))
    with pytest.raises(BenchmarkError, match=rf"is truncated or corrupt \(.*{told}.*\): download it again"):
        from_file(get("mobilenetv2"), 32, damaged)


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
    assert log.count("NOT transfer learning") == 3  # every backbone says so ...
    assert log.count("=" * 78) == 2  # ... the first in the full block, the next two in one line each


def test_a_backbone_in_keras_cache_is_recognised(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    assert not keras_cached(get("mobilenetv2"))
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").touch()
    assert keras_cached(get("mobilenetv2")) and not keras_cached(get("inceptionresnetv2"))


def keras2_h5(model: keras.Model, path: Path, nested: bool = False, drop: str | None = None) -> Path:
    """`model` as Keras 2 wrote a whole no-top model (`model.save("x.h5")`): a `model_weights` group,
    weight names like `conv2d_5/kernel:0`, and auto-named layers numbered from zero as in a fresh Keras 2
    session. nested=True: the backbone inside a wrapper model, saved as one group (as `Sequential([base,
    GlobalAveragePooling2D()])` is). `drop`: a layer left out."""
    import h5py

    from backbones.keras2_h5 import canonical_names

    fresh = {}  # canonical rank -> the name a fresh Keras 2 session gives it
    for name, canonical in canonical_names([layer.name for layer in model.layers]).items():
        kind, _, rank = canonical.partition("#")
        fresh[name] = (kind if rank == "0" else f"{kind}_{rank}") if rank else name
    layers = [layer for layer in model.layers if layer.name != drop]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"], f.attrs["backend"] = b"2.9.0", b"tensorflow"
        f.attrs["model_config"] = b'{"class_name": "Functional"}'
        weights = f.create_group("model_weights")
        groups = [(model.name, layers)] if nested else [(fresh[layer.name], [layer]) for layer in layers]
        weights.attrs["layer_names"] = [name.encode() for name, _ in groups]
        for group_name, members in groups:
            group = weights.create_group(group_name)
            names = []
            for layer in members:
                for weight in layer.trainable_weights + layer.non_trainable_weights:
                    names.append(f"{fresh[layer.name]}/{weight.name}:0")
                    group.create_dataset(names[-1], data=np.asarray(weight))
            group.attrs["weight_names"] = [name.encode() for name in names]
    return path


@pytest.mark.parametrize("nested", [False, True])
def test_a_keras2_no_top_model_file_loads_by_layer_name(tmp_path: Path, nested: bool):
    """InceptionV3 names its layers itself (conv2d_17); built second in this process they are numbered
    from conv2d_94 on, unlike the file's. The loaded backbone computes exactly what the saved one did."""
    keras.utils.set_random_seed(7)
    saved = build(get("inceptionv3"), 75, None)
    for weight in saved.weights:  # away from any initial value, BatchNorm statistics included
        weight.assign(np.asarray(weight) + np.random.default_rng(0).normal(0, 0.01, weight.shape))
    path = keras2_h5(saved, tmp_path / "RadImageNet-InceptionV3_notop.h5", nested=nested)
    loaded = from_file(get("inceptionv3"), 75, path)
    assert loaded.model.layers[1].name != saved.layers[1].name  # the names really differ in this process
    pixels = np.random.default_rng(1).normal(size=(2, 75, 75, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model(pixels), saved(pixels), atol=1e-5)
    assert loaded.weights_used.startswith("file:RadImageNet-InceptionV3_notop.h5 (sha256 ")


def test_a_keras2_file_missing_a_layer_or_of_another_architecture_is_refused(tmp_path: Path):
    saved = build(get("resnet50"), 32, None)
    path = keras2_h5(saved, tmp_path / "partial.h5", drop="conv3_block2_2_conv")
    refused = r"does not cover resnet50: 1 of its layers .*\(conv3_block2_2_conv \(missing\)\)"
    with pytest.raises(BenchmarkError, match=refused):
        from_file(get("resnet50"), 32, path)
    with pytest.raises(BenchmarkError, match="does not cover densenet121"):
        from_file(get("densenet121"), 32, keras2_h5(saved, tmp_path / "resnet.h5"))
