"""`python -m benchmark.predict` on a real saved run: the same numbers the run's test evaluation saw."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark import cli
from benchmark.predict import work
from tests.conftest import run_cli, write_dicom


def test_predictions_equal_the_runs_own_test_predictions(saved_run):
    run_dir, data_root = saved_run
    expected = pd.read_csv(run_dir / "predictions.csv")
    result = run_cli([f"run={run_dir}", f"input={data_root}", "format=csv"], module="benchmark.predict")
    assert result.returncode == 0, result.stderr[-2000:]
    got = pd.read_csv(io.StringIO(result.stdout))
    got["file"] = got["file"].map(lambda f: str(Path(f).relative_to(data_root)))
    merged = expected.merge(got, on="file", suffixes=("", "_new"))
    assert len(merged) == len(expected)  # every test image was found in the folder and predicted
    columns = [c for c in expected.columns if c.startswith("prob_")]
    np.testing.assert_allclose(
        merged[columns].to_numpy(), merged[[f"{c}_new" for c in columns]].to_numpy(), atol=1e-4
    )
    assert (merged["predicted_label"] == merged["predicted_label_new"]).all()


def predict_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m benchmark.predict argv` run in this process: (exit code, stdout, stderr)."""
    try:
        cli.main("predict", work, argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_image_as_json_and_as_a_table(saved_run, capsys):
    run_dir, data_root = saved_run
    image = next(data_root.glob("tumor/*.png"))
    code, out, _ = predict_in_process([f"run={run_dir}", f"input={image}", "format=json"], capsys)
    (record,) = json.loads(out)
    assert code == 0 and record["file"] == str(image)
    assert record["predicted_label"] in {"normal", "pneumonia", "tumor"}
    assert sum(record[f"prob_{c}"] for c in ("normal", "pneumonia", "tumor")) == pytest.approx(1, abs=1e-5)
    code, out, _ = predict_in_process([f"run={run_dir}", f"input={image}"], capsys)
    assert code == 0 and "predicted_label" in out.splitlines()[0]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_run", "is not a folder"),
        ("no_model", "has no model.keras or head.keras"),
        ("bad_image", "cannot read image"),
        ("no_input", "does not exist"),
        ("bad_format", "format=xml is unknown"),
    ],
)
def test_clear_errors(saved_run, tmp_path, capsys, case, message):
    run_dir, data_root = saved_run
    image = next(data_root.glob("normal/*.png"))
    args = {"run": str(run_dir), "input": str(image)}
    if case == "no_run":
        args["run"] = str(tmp_path / "missing")
    elif case == "no_model":
        (tmp_path / "r").mkdir()
        (tmp_path / "r" / "metrics.json").write_text((run_dir / "metrics.json").read_text())
        args["run"] = str(tmp_path / "r")
    elif case == "bad_image":
        (tmp_path / "scan.png").write_bytes(b"\x89PNG garbage")
        args["input"] = str(tmp_path / "scan.png")
    elif case == "no_input":
        args["input"] = str(tmp_path / "nothing")
    extra = ["format=xml"] if case == "bad_format" else []
    code, _, err = predict_in_process([f"{k}={v}" for k, v in args.items()] + extra, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], err


def test_dicom_input(saved_run, tmp_path, capsys):
    run_dir, data_root = saved_run
    pixels = np.asarray(Image.open(next(data_root.glob("pneumonia/*.png"))), dtype=np.uint16) * 16
    write_dicom(tmp_path / "slice.dcm", pixels)
    code, out, err = predict_in_process(
        [f"run={run_dir}", f"input={tmp_path / 'slice.dcm'}", "format=json"], capsys
    )
    assert code == 0, err[-2000:]
    assert json.loads(out)[0]["file"].endswith("slice.dcm")


def with_calibration(saved_run, tmp_path: Path, **calibration) -> Path:
    """A private copy of the shared run with these calibration fields (the tiny run's own temperature
    stops at its search bound, as a model near chance does)."""
    run_dir, _ = saved_run
    results = run_dir.parents[3]
    target = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}"
    shutil.copytree(results, target)
    copy = target / run_dir.relative_to(results)
    metrics = json.loads((copy / "metrics.json").read_text())
    merged = {**metrics["calibration"], **calibration}
    metrics["calibration"] = {key: value for key, value in merged.items() if value is not None}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    return copy


def test_calibrated_predictions_apply_the_runs_validation_temperature(saved_run, tmp_path, capsys):
    from benchmark.metrics.calibration import apply_temperature

    run_dir, data_root = saved_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] > 0 and metrics["calibration"]["fitted_on"] == "validation"
    fitted = with_calibration(saved_run, tmp_path, temperature=1.7, temperature_at_bound=False)
    image = str(next(data_root.glob("tumor/*.png")))
    columns = [f"prob_{c}" for c in metrics["classes"]]
    found = {}
    for calibrated in ("false", "true"):
        code, out, err = predict_in_process(
            [f"run={fitted}", f"input={image}", "format=json", f"calibrated={calibrated}"], capsys
        )
        assert code == 0, err[-2000:]
        found[calibrated] = np.array([[json.loads(out)[0][c] for c in columns]])
    np.testing.assert_allclose(found["true"], apply_temperature(found["false"], 1.7), atol=1e-6)
    assert found["true"].argmax() == found["false"].argmax()

    old = with_calibration(saved_run, tmp_path)  # as if made before calibration was recorded
    (old / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "calibration"}))
    code, _, err = predict_in_process([f"run={old}", f"input={image}", "calibrated=true"], capsys)
    assert code == 2 and "recorded no temperature" in err and "force=true" in err


@pytest.mark.parametrize("flagged", [True, None])  # None: a run made before the flag was recorded
def test_a_temperature_at_its_search_bound_is_refused(saved_run, tmp_path, capsys, flagged):
    """A fit at the bound is the search's limit, not an estimate (README): its "calibrated" confidences
    would be an artefact, so calibrated=true is refused with the option that works."""
    _, data_root = saved_run
    run_dir = with_calibration(saved_run, tmp_path, temperature=20.0, temperature_at_bound=flagged)
    image = str(next(data_root.glob("tumor/*.png")))
    code, out, err = predict_in_process([f"run={run_dir}", f"input={image}", "calibrated=true"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and not out, err[-2000:]
    assert "temperature of run=" in errors[0] and "stopped at the bound of its search [0.05, 20]" in errors[0]
    assert errors[0].endswith("predict with calibrated=false")
    code, out, err = predict_in_process([f"run={run_dir}", f"input={image}", "calibrated=false"], capsys)
    assert code == 0 and "predicted_label" in out, err[-2000:]


def test_calibrated_must_be_true_or_false(saved_run, tmp_path, capsys):
    """calibrated=maybe applied the temperature (a non-empty string is true)."""
    run_dir, data_root = saved_run
    image = str(next(data_root.glob("tumor/*.png")))
    code, out, err = predict_in_process([f"run={run_dir}", f"input={image}", "calibrated=maybe"], capsys)
    assert code == 2 and not out
    assert err.strip().splitlines()[-1] == (
        "error: calibrated=maybe is not true or false: use calibrated=true (apply the run's validation "
        "temperature) or calibrated=false")


def test_an_unreadable_file_in_a_folder_is_skipped_with_one_warning(saved_run, tmp_path, capsys, caplog):
    """As training skips it (dataset.on_bad_image=skip): one bad file does not stop the batch."""
    run_dir, data_root = saved_run
    folder = tmp_path / "scans"
    folder.mkdir()
    for image in sorted(data_root.glob("tumor/*.png"))[:2]:
        shutil.copy(image, folder / image.name)
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    (folder / "empty.png").write_bytes(b"")
    code, out, err = predict_in_process([f"run={run_dir}", f"input={folder}", "format=json"], capsys)
    assert code == 0, err[-2000:]
    assert sorted(Path(r["file"]).name for r in json.loads(out)) == sorted(
        p.name for p in folder.glob("*.png") if p.stat().st_size > 20)
    (warning,) = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert warning.startswith(f"skipping 2 unreadable image(s), not in the output: {folder / 'broken.png'}: ")
    assert f"{folder / 'empty.png'}: the file is empty" in warning

    for path in sorted(data_root.glob("tumor/*.png"))[:2]:
        (folder / path.name).unlink()
    code, _, err = predict_in_process([f"run={run_dir}", f"input={folder}"], capsys)
    assert code == 2 and "error: none of the 2 images can be read: " in err
