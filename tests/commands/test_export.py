"""`python -m benchmark.export`: the exported file, run by its own runtime, checked against Keras."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmark import cli
from benchmark.export import onnx, work
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
    metrics = json.loads((run_dir / "metrics.json").read_text())
    facts = json.loads((run_dir / "exports" / format_ / "model.json").read_text())
    assert facts["classes"] == metrics["classes"] == ["normal", "pneumonia", "tumor"]
    assert facts["image_size"] == 32 and facts["preprocessing"].startswith("inside the model: tf (")
    assert facts["temperature"] == metrics["calibration"]["temperature"]
    assert facts["temperature_at_bound"] == metrics["calibration"]["temperature_at_bound"]
    run_cfg = OmegaConf.load(run_dir / "config.yaml")  # how images became the input: a deployment repeats it
    assert {k: facts["decoding"][k] for k in ("window", "intensity", "resize")} == \
        {k: run_cfg.dataset.get(k, default) for k, default in (("window", "auto"), ("intensity", "minmax"),
                                                                  ("resize", "stretch"))}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert facts["decoding"]["applied"] == manifest["dataset"]["decoding"]["applied"] != {}  # the rules used
    if format_ == "onnx":  # the file itself says what its outputs are, read back by both libraries
        import onnx as onnx_format
        import onnxruntime

        path = str(run_dir / "exports" / "onnx" / file)
        props = {prop.key: prop.value for prop in onnx_format.load(path).metadata_props}
        session = onnxruntime.InferenceSession(path)
        assert session.get_modelmeta().custom_metadata_map == props
        assert json.loads(props["classes"]) == metrics["classes"] and props["image_size"] == "32"
        assert float(props["temperature"]) == metrics["calibration"]["temperature"]
        assert props["temperature_at_bound"] in ("true", "false")
        assert json.loads(props["decoding"]) == facts["decoding"]
        assert "preprocess_input" in props["preprocessing"]
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


def export_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """`python -m benchmark.export argv` in this process: (exit code, stderr)."""
    try:
        cli.main("export", work, argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code)
    return code, capsys.readouterr().err


def copied_run(saved_run, tmp_path: Path) -> Path:
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    shutil.copytree(results, tmp_path / "results")
    return tmp_path / "results" / run_dir.relative_to(results)


def test_a_refused_re_export_keeps_the_previous_export(saved_run, tmp_path: Path, capsys):
    """The new export is built beside the old one and swapped in only once it passed."""
    run_dir = copied_run(saved_run, tmp_path)
    code, err = export_in_process([f"run={run_dir}", "format=onnx"], capsys)
    assert code == 0, err[-2000:]
    exports = run_dir / "exports"
    before = {p.name: p.read_bytes() for p in (exports / "onnx").iterdir()}
    assert {"model.onnx", "parity.json"} <= set(before)

    code, err = export_in_process([f"run={run_dir}", "format=onnx", "tolerance=1e-9"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err[-2000:]
    assert (exports / "onnx").is_dir(), "the refused re-export deleted the previous export"
    assert {p.name: p.read_bytes() for p in (exports / "onnx").iterdir()} == before
    assert "not written (the previous export in that folder is kept)" in errors[0]
    assert [p.name for p in exports.iterdir()] == ["onnx"]  # no staging folder left behind


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("tolerance=abc", "error: tolerance=abc must be a positive number"),
        ("tolerance=0", "error: tolerance=0 must be a positive number"),
        ("batch_size=0", "error: batch_size=0 must be a whole number of at least 1: e.g. batch_size=32"),
    ],
)
def test_a_bad_option_stops_before_any_export(saved_run, tmp_path: Path, capsys, option, message):
    """tolerance=abc was a traceback after a model.onnx was written without its parity.json."""
    run_dir = copied_run(saved_run, tmp_path)
    code, err = export_in_process([f"run={run_dir}", "format=onnx", option], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and errors[0].startswith(message), err[-2000:]
    assert not (run_dir / "exports").exists()


def test_an_export_whose_outputs_are_not_numbers_is_refused(saved_run, tmp_path: Path, capsys, monkeypatch):
    """NaN > tolerance is False: an ONNX file whose outputs are NaN was published with "passed": true."""
    from benchmark import export

    def nan_onnx(model, folder: Path, metadata: dict[str, str] | None = None):
        run, writer = onnx(model, folder, metadata)
        return (lambda x: run(x) * np.nan), writer

    monkeypatch.setitem(export.EXPORTERS, "onnx", nan_onnx)
    run_dir = copied_run(saved_run, tmp_path)
    code, err = export_in_process([f"run={run_dir}", "format=onnx"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err[-2000:]
    assert "the onnx export gives outputs that are not numbers (NaN) on the run's 9 test images" in errors[0]
    assert not (run_dir / "exports" / "onnx").exists()
    assert not export.within_tolerance(float("nan"), 1e-3) and export.within_tolerance(1e-4, 1e-3)


@pytest.mark.parametrize(
    ("calibration", "at_bound", "use"),
    [
        ({"temperature": 1.7, "temperature_at_bound": False}, False, "calibrated probabilities = softmax("),
        ({"temperature": 20.0, "temperature_at_bound": True}, True, "not to be applied: the fit stopped at "
                                                                    "the bound of its search [0.05, 20]"),
        ({"temperature": 20.0}, True, "not to be applied"),  # a run made before the flag was recorded
        (None, None, "none recorded"),  # a run made before calibration was recorded
    ],
)
def test_model_json_says_whether_the_temperature_may_be_applied(saved_run, calibration, at_bound, use):
    """A temperature predict calibrated=true refuses gets no recipe in model.json, and an older run's is
    flagged from its value, not left null."""
    from benchmark.export import model_facts

    run_dir, _ = saved_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("calibration")
    facts = model_facts({**metrics, **({"calibration": calibration} if calibration else {})}, {})
    assert facts["temperature_at_bound"] is at_bound and facts["temperature_use"].startswith(use)
