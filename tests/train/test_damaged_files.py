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
from benchmark.runs.pipeline import run


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
