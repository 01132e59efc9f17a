"""`python -m benchmark.export`: the exported file, run by its own runtime, checked against Keras."""

import json
import shutil
from pathlib import Path

from tests.conftest import run_cli


def test_a_tflite_export_matches_the_keras_model_on_the_runs_test_images(saved_run, tmp_path: Path):
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    shutil.copytree(results, tmp_path / "results")
    run_dir = tmp_path / "results" / run_dir.relative_to(results)
    result = run_cli([f"run={run_dir}", "format=tflite"], module="benchmark.export")
    assert result.returncode == 0, result.stderr[-2000:]
    parity = json.loads((run_dir / "exports" / "tflite" / "parity.json").read_text())
    assert parity["passed"] and parity["n_images"] == 9
    assert parity["max_abs_difference"] <= parity["tolerance"]
    assert (run_dir / "exports" / "tflite" / "model.tflite").stat().st_size > 0

    unknown = run_cli([f"run={run_dir}", "format=pickle"], module="benchmark.export")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: format=pickle is unknown: use one of savedmodel, tflite, onnx")
