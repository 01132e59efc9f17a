"""`python -m benchmark.export`: the exported file, run by its own runtime, checked against Keras."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from benchmark.export import onnx
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("format_", "file"),
    [("savedmodel", "model/saved_model.pb"), ("tflite", "model.tflite"), ("onnx", "model.onnx")],
)
def test_an_export_matches_the_keras_model_on_the_runs_test_images(saved_run, tmp_path: Path, format_, file):
    """SavedModel by TensorFlow, TFLite by its interpreter, ONNX (written layer by layer) by ONNX Runtime:
    each file run by its own runtime."""
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    shutil.copytree(results, tmp_path / "results")
    run_dir = tmp_path / "results" / run_dir.relative_to(results)
    result = run_cli([f"run={run_dir}", f"format={format_}"], module="benchmark.export")
    assert result.returncode == 0, result.stderr[-2000:]
    parity = json.loads((run_dir / "exports" / format_ / "parity.json").read_text())
    assert parity["passed"] and parity["n_images"] == 9
    assert parity["max_abs_difference"] <= parity["tolerance"]
    assert parity["writer"] == {"savedmodel": "keras", "tflite": "tflite", "onnx": "medbench"}[format_]
    assert (run_dir / "exports" / format_ / file).stat().st_size > 0
    if format_ != "tflite":
        return

    unknown = run_cli([f"run={run_dir}", "format=pickle"], module="benchmark.export")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: format=pickle is unknown: use one of savedmodel, tflite, onnx")


def test_an_onnx_export_of_a_layer_the_writer_does_not_know_goes_to_tf2onnx(tmp_path: Path):
    """A layer backbones/onnx_graph.py does not write (here LeakyReLU; in medbench a kNN probe's vote):
    tf2onnx converts the traced graph instead, and the file computes what Keras computes."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.LeakyReLU(0.3)(keras.layers.Conv2D(4, 3)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    expected = model.predict(pixels, verbose=0)
    run, writer = onnx(model, tmp_path)
    assert writer == "tf2onnx" and (tmp_path / "model.onnx").stat().st_size > 0
    np.testing.assert_allclose(run(pixels), expected, rtol=1e-5, atol=1e-6)
