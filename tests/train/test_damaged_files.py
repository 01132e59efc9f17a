"""A damaged file of the frozen extractor (its Keras folder, its ONNX export) is made again with a
one-line warning, like a feature cache that fails its checksum, instead of stopping the run."""

import json
import logging
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import backbones.preprocess  # noqa: F401  registers the Preprocess layer for loading the extractor
from benchmark import cli
from benchmark.data.images import decode_file
from benchmark.files import aside_path
from benchmark.runs.pipeline import run
from benchmark.train.engines import runtime_on_export
from benchmark.train.shared_extractor import load_or_build


@pytest.fixture
def warm(saved_run, tmp_path: Path) -> Path:
    """tmp_path holding a copy of the session's finished tiny run (seed 0) with its caches."""
    shutil.copytree(saved_run[0].parents[4], tmp_path, dirs_exist_ok=True)
    return tmp_path


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_truncated_extractor_is_rebuilt_as_the_same_network_and_earlier_runs_still_predict(
    tiny_cfg, warm: Path, saved_run, caplog: pytest.LogCaptureFixture
):
    (earlier,) = (warm / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*")
    folder = next((warm / "results" / "extractors").glob("*/config.json")).parent
    saved = [w.copy() for w in keras.models.load_model(folder).get_weights()]
    truncate(folder / "model.weights.h5")
    shutil.rmtree(warm / "cache" / "features")  # so the run needs the network
    metrics = run(tiny_cfg("seed=1"))
    assert metrics["backbone_built"] is True
    (warning,) = [w for w in warnings_of(caplog) if "extractor" in w]
    assert "cannot be loaded" in warning and warning.endswith("rebuilding") and "\n" not in warning
    assert not aside_path(folder).exists()  # the damaged one is gone once its rebuild is saved
    rebuilt = keras.models.load_model(folder).get_weights()  # deterministic: the init seed, the same images
    assert len(rebuilt) == len(saved)
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt, saved, strict=True))
    # the completed seed-0 run, whose model is this extractor and its head, still predicts its own numbers
    completed = json.loads((earlier / "metrics.json").read_text())
    predictions = pd.read_csv(earlier / "predictions.csv")
    pixels = np.stack([decode_file(saved_run[1] / f, completed["image_size"]) for f in predictions["file"]])
    got = cli.load_model(earlier).predict(pixels.astype(np.float32), verbose=0)
    cached = predictions[[f"prob_{c}" for c in completed["classes"]]].to_numpy()
    np.testing.assert_allclose(got, cached, atol=1e-4)


def test_a_truncated_onnx_export_is_exported_again(tiny_cfg, warm: Path, caplog: pytest.LogCaptureFixture):
    shutil.rmtree(warm / "cache" / "features")
    first = run(tiny_cfg("seed=1", "runtime.engine=onnxruntime"))
    assert first["engine_onnx_writer"] == "medbench"
    (export,) = (warm / "results" / "extractors").glob("*.onnx")
    truncate(export)
    shutil.rmtree(warm / "cache" / "features")  # so the run needs the export
    caplog.clear()
    metrics = run(tiny_cfg("seed=2", "runtime.engine=onnxruntime"))
    (warning,) = [w for w in warnings_of(caplog) if "ONNX" in w]
    assert "cannot be loaded" in warning and warning.endswith("exporting it again") and "\n" not in warning
    assert metrics["extraction_engine"] == "onnxruntime" and metrics["engine_onnx_writer"] == "medbench"
    assert metrics["engine_export_s"] > 0 and 0 <= metrics["engine_parity_max_rel"] <= 1e-4  # still checked


def test_a_damaged_onnx_export_whose_export_fails_is_put_back(tmp_path: Path):
    """As the extractor's folder: an export that fails again (out of memory; here a model without an
    input) takes nothing away, and the next run that can export it does."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
    path = tmp_path / "extractors" / "small.onnx"
    runtime_on_export("onnxruntime", model, path, threads=1)
    truncate(path)
    damaged = path.read_bytes()
    with pytest.raises(AttributeError, match="no defined input"):
        runtime_on_export("onnxruntime", keras.Sequential([keras.layers.Dense(3)]), path, threads=1)
    assert path.read_bytes() == damaged and not aside_path(path).exists()
    forward, record = runtime_on_export("onnxruntime", model, path, threads=1)
    assert record["onnx_writer"] == "medbench" and not aside_path(path).exists()
    pixels = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(forward(pixels), model.predict(pixels, verbose=0), rtol=1e-5, atol=1e-6)


def small_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_truncated_extractor_is_replaced_by_its_rebuild(tmp_path: Path, caplog):
    folder = tmp_path / "extractors" / "small"
    small_model(0).save(folder, zipped=False)  # as an extractor is saved: a Keras folder
    truncate(folder / "model.weights.h5")
    with caplog.at_level(logging.WARNING):
        model = load_or_build(folder, lambda: small_model(1))
    assert "truncated file" in caplog.text
    assert not aside_path(folder).exists()  # removed once the rebuild was saved
    again = keras.models.load_model(folder).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(again, model.get_weights(), strict=True))


def test_a_damaged_extractor_whose_rebuild_fails_is_put_back(tmp_path: Path):
    """Offline without the ImageNet weights, or out of memory again: the runs that name the extractor
    keep the file they had instead of losing it."""
    folder = tmp_path / "extractors" / "small"
    small_model(0).save(folder, zipped=False)
    truncate(folder / "model.weights.h5")
    damaged = files_in(folder)

    def unbuildable() -> keras.Model:  # weights that cannot be loaded: a file not there
        return keras.applications.MobileNetV2(weights=str(tmp_path / "absent.h5"), input_shape=(32, 32, 3))

    with pytest.raises(ValueError, match="weights"):
        load_or_build(folder, unbuildable)
    assert files_in(folder) == damaged and not aside_path(folder).exists()
    rebuilt = load_or_build(folder, lambda: small_model(1))  # the next run that can build it does
    assert keras.models.load_model(folder).count_params() == rebuilt.count_params()


def test_an_extractor_set_aside_by_a_killed_process_is_put_back(tmp_path: Path):
    folder = tmp_path / "extractors" / "small"
    small_model(0).save(folder, zipped=False)
    saved = keras.models.load_model(folder).get_weights()
    folder.rename(aside_path(folder))  # killed between setting it aside and saving the rebuild
    model = load_or_build(folder, lambda: small_model(1))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), saved, strict=True))
    assert not aside_path(folder).exists()


def test_an_extractor_that_fails_to_load_for_another_reason_is_kept(tmp_path: Path):
    """Not every failure to load is damage (out of memory on a GPU; here a layer this process has not
    registered): the error is raised and the file, maybe intact, stays."""

    @keras.saving.register_keras_serializable(package="damaged_files_test")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    folder = tmp_path / "extractors" / "small"
    keras.Sequential([keras.Input((4,)), Twice(), keras.layers.Dense(3)]).save(folder, zipped=False)
    files = files_in(folder)
    keras.saving.get_custom_objects().pop("damaged_files_test>Twice")
    with pytest.raises(TypeError, match="Could not locate class 'Twice'"):
        load_or_build(folder, lambda: small_model(1))
    assert files_in(folder) == files
