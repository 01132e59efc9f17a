"""`python -m benchmark.export run=<run dir> format=savedmodel|tflite|onnx`.

Keras 3's exporters have known breakages, so an export counts only after the exported file, run by its own
runtime (TensorFlow, the TFLite interpreter, ONNX Runtime), gives the Keras model's probabilities on the
run's own test images within `tolerance`. The result is in <run>/exports/<format>/ with parity.json (the
max difference, measured; who wrote the file and in how many seconds) and model.json (what a deployment
needs and the file cannot say: class order, input, preprocessing, temperature; also in an ONNX file's
metadata). It is built in a hidden folder beside that one and swapped in only once it passed: an export
outside the tolerance, or one that fails, is refused with one line and the previous export stays.
"""

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.data import load_dataset
from benchmark.data.pixels import split_pixels
from benchmark.errors import BenchmarkError
from benchmark.files import publish_directory, read_json, write_json
from benchmark.metrics.calibration import bound_range, recorded_temperature
from benchmark.runs.layout import EXPORTS, staging_directory
from benchmark.runs.settings import POSITIVE

Exported = tuple[Callable[[np.ndarray], np.ndarray], str]  # the file run by its runtime, who wrote it


def savedmodel(model, folder: Path, metadata: dict[str, str] | None = None) -> Exported:
    import tensorflow as tf

    model.export(str(folder / "model"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(folder / "model"))
    return (lambda x: served.serve([tf.constant(x)]).numpy()), "keras"


def tflite(model, folder: Path, metadata: dict[str, str] | None = None) -> Exported:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        (folder / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved).convert())
    interpreter = tf.lite.Interpreter(str(folder / "model.tflite"))

    def run(x: np.ndarray) -> np.ndarray:
        found = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(found["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(found["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run, "tflite"


def onnx(model, folder: Path, metadata: dict[str, str] | None = None) -> Exported:
    """Written as the extraction engine's file is (engines.write_onnx: layer by layer, tf2onnx for a layer
    that writer does not know, such as a kNN probe's vote). Keras's own exporter (tf2onnx through a
    SavedModel) made InceptionResNetV2's export command take 70 s and 11.6 GB (README). `metadata` is
    written into the file's metadata_props with it, so the parity check runs the final file."""
    from benchmark.train.engines import ENGINE_PACKAGES, installed, onnxruntime_forward, write_onnx

    if not installed("onnxruntime"):
        raise BenchmarkError(
            f"format=onnx needs {' and '.join(ENGINE_PACKAGES['onnxruntime'])} (medbench dependencies): "
            "pip install -e ."
        )
    path = folder / "model.onnx"
    writer = write_onnx(model, path, output="probabilities", metadata=metadata)
    return onnxruntime_forward(path, threads=0), writer  # the engine's session, every core


EXPORTERS = {"savedmodel": savedmodel, "tflite": tflite, "onnx": onnx}  # format= -> exporter


def check_options(cfg: DictConfig) -> None:
    """The options, before any data or model is read (tolerance=abc was a traceback after the export)."""
    if cfg.format not in EXPORTERS:
        raise BenchmarkError(f"format={cfg.format} is unknown: use one of {', '.join(EXPORTERS)}")
    tolerance = cfg.tolerance
    if not POSITIVE[0](tolerance):
        raise BenchmarkError(
            f"tolerance={tolerance} must be a positive number (the largest accepted probability difference): "
            "e.g. tolerance=1e-3"
        )
    cli.require_count("batch_size", cfg.batch_size, minimum=1, example=32)


def temperature_use(calibration: dict, bounds: tuple[float, float] | None) -> str:
    """How to apply the run's temperature, or why not to: a fit at its search bound (`bounds`, its
    calibration.bound_range) is no estimate, and predict calibrated=true refuses it, so model.json must not
    hand out a recipe for it either."""
    if recorded_temperature(calibration) is None:
        return "none recorded (the run was made before calibration was part of a run): do not calibrate"
    if bounds:
        low, high = bounds
        return (f"not to be applied: the fit stopped at the bound of its search [{low:g}, {high:g}], so it "
                "is not an estimate (predict calibrated=true refuses it)")
    return "calibrated probabilities = softmax(log(probabilities) / temperature); not applied by the model"


DECODED = ("8-bit RGB as benchmark/data/images.py decodes a file (predict does the same): a DICOM's pixels "
           "rescaled to its units and mapped to 0-255 by `window`, other 16-bit or float images by "
           "`intensity`, grayscale repeated to 3 channels, then resized to image_size x image_size with a "
           "bilinear filter (`resize`: stretch squashes the image to the square, letterbox first pads it "
           "with black to a centred square); `applied`: how many of the run's files each rule decoded, "
           "window=auto's choices among them (README, Your data)")


def model_facts(metrics: dict, decoding: dict) -> dict:
    """What a deployment of the exported file needs and the file itself cannot say: the classes in the
    order of its outputs, its input and how the run decoded images into it (`decoding`: the run's
    dataset.window, intensity and resize: another window moves every pixel), the preprocessing inside it,
    and the temperature fitted on validation (at its search bound: no estimate, not to be applied,
    README), which the file does not apply."""
    calibration = metrics.get("calibration") or {}
    temperature, bounds = calibration.get("temperature"), bound_range(calibration)
    return {
        "classes": list(metrics["classes"]),
        "image_size": int(metrics["image_size"]),
        "input": (f"float32 [batch, {metrics['image_size']}, {metrics['image_size']}, 3]: raw RGB pixels "
                  "0-255, decoded as `decoding` says"),
        "decoding": {**decoding, "how": DECODED},
        "output": "probabilities, one per class in the order of classes",
        "backbone": metrics.get("backbone"),
        "preprocessing": f"inside the model: {metrics.get('preprocess') or metrics.get('backbone')}",
        "temperature": temperature,
        "temperature_at_bound": None if temperature is None else bounds is not None,
        "temperature_use": temperature_use(calibration, bounds),
    }


def within_tolerance(difference: float, tolerance: float) -> bool:
    """Parity passed: NaN (an export whose outputs are not numbers) fails, which `difference > tolerance`
    would have let through."""
    return difference <= tolerance


def as_metadata(facts: dict) -> dict[str, str]:
    """ONNX metadata_props are strings: lists and flags as JSON (classes: ["normal", ...])."""
    import json

    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in facts.items()}


def work(cfg: DictConfig) -> Path:
    check_options(cfg)
    run_dir = cli.require_model_run(cfg.run)
    run_cfg, metrics = OmegaConf.load(run_dir / "config.yaml"), read_json(run_dir / "metrics.json")
    cli.require_run_data(run_dir, run_cfg.dataset, "the export is checked on its test images")
    dataset = load_dataset(run_cfg.dataset, Path(run_cfg.data_dir), Path(run_cfg.cache_dir))
    pixels = np.asarray(
        split_pixels(dataset, "test", int(metrics["image_size"]), Path(run_cfg.cache_dir)), np.float32
    )
    model = cli.load_model(run_dir)
    expected = model.predict(pixels, batch_size=cfg.batch_size, verbose=0)
    folder = run_dir / EXPORTS / cfg.format
    # the options and how many of the run's files each rule decoded (window=auto's choices), as loaded
    facts = model_facts(metrics, dataset.records["decoding"])
    staging = staging_directory(folder)  # the old export stays until the new one passes
    try:
        started = time.perf_counter()
        exported, writer = EXPORTERS[cfg.format](model, staging, as_metadata(facts))
        export_s = time.perf_counter() - started
        batches = range(0, len(pixels), cfg.batch_size)
        got = np.concatenate([exported(pixels[i : i + cfg.batch_size]) for i in batches])
        difference = float(np.max(np.abs(got - expected)))
        if not within_tolerance(difference, cfg.tolerance):
            kept = " (the previous export in that folder is kept)" if folder.exists() else ""
            how = ("gives outputs that are not numbers (NaN)" if math.isnan(difference) else
                   f"differs from the Keras model by up to {difference:.2g}")
            raise BenchmarkError(
                f"the {cfg.format} export {how} on the "
                f"run's {len(pixels)} test images (tolerance {cfg.tolerance:g}): not written{kept}; try "
                "another format"
            )
        write_json(staging / "model.json", facts)
        write_json(staging / "parity.json", {
            "format": cfg.format, "writer": writer, "export_s": export_s, "n_images": len(pixels),
            "max_abs_difference": difference, "tolerance": float(cfg.tolerance),
            "passed": True})  # a difference outside the tolerance, or NaN, was refused above
        publish_directory(staging, folder, replace=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{folder}: max |probability difference| {difference:.2g} on {len(pixels)} test images")
    return folder


if __name__ == "__main__":
    cli.main("export", work)
