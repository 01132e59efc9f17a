"""`python -m benchmark.export`: the exported file, run by its own runtime, checked against Keras."""

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("format_", "file"),
    [("savedmodel", "model/saved_model.pb"), ("tflite", "model.tflite"), ("onnx", "model.onnx")],
)
def test_an_export_matches_the_keras_model_on_the_runs_test_images(saved_run, tmp_path: Path, format_, file):
    """SavedModel by TensorFlow, TFLite by its interpreter, ONNX (tf2onnx) by ONNX Runtime: each file run by
    its own runtime."""
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    shutil.copytree(results, tmp_path / "results")
    run_dir = tmp_path / "results" / run_dir.relative_to(results)
    result = run_cli([f"run={run_dir}", f"format={format_}"], module="benchmark.export")
    assert result.returncode == 0, result.stderr[-2000:]
    parity = json.loads((run_dir / "exports" / format_ / "parity.json").read_text())
    assert parity["passed"] and parity["n_images"] == 9
    assert parity["max_abs_difference"] <= parity["tolerance"]
    assert (run_dir / "exports" / format_ / file).stat().st_size > 0
    if format_ != "tflite":
        return

    unknown = run_cli([f"run={run_dir}", "format=pickle"], module="benchmark.export")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: format=pickle is unknown: use one of savedmodel, tflite, onnx")
