"""`python -m benchmark.export run=<run dir> format=savedmodel|tflite|onnx`.

Keras 3's exporters have known breakages, so an export counts only after the exported file, run by its own
runtime (TensorFlow, the TFLite interpreter, ONNX Runtime), gives the Keras model's probabilities on the
run's own test images within `tolerance`. The result is in <run>/exports/<format>/ with parity.json (the
max difference, measured; who wrote the file and in how many seconds); an export outside the tolerance
is removed and refused with one line.
"""

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
from benchmark.files import read_json, write_json

Exported = tuple[Callable[[np.ndarray], np.ndarray], str]  # the file run by its runtime, who wrote it


def savedmodel(model, folder: Path) -> Exported:
    import tensorflow as tf

    model.export(str(folder / "model"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(folder / "model"))
    return (lambda x: served.serve([tf.constant(x)]).numpy()), "keras"


def tflite(model, folder: Path) -> Exported:
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


def onnx(model, folder: Path) -> Exported:
    """Written as the extraction engine's file is (engines.write_onnx: layer by layer, tf2onnx for a layer
    that writer does not know, such as a kNN probe's vote). Keras's own exporter (tf2onnx through a
    SavedModel) made InceptionResNetV2's export command take 70 s and 11.6 GB (README)."""
    from benchmark.train.engines import ENGINE_PACKAGES, installed, onnxruntime_forward, write_onnx

    if not installed("onnxruntime"):
        raise BenchmarkError(
            f"format=onnx needs {' and '.join(ENGINE_PACKAGES['onnxruntime'])} (medbench dependencies): "
            "pip install -e ."
        )
    path = folder / "model.onnx"
    writer = write_onnx(model, path, output="probabilities")
    return onnxruntime_forward(path, threads=0), writer  # the engine's session, every core


EXPORTERS = {"savedmodel": savedmodel, "tflite": tflite, "onnx": onnx}  # format= -> exporter


def work(cfg: DictConfig) -> Path:
    if cfg.format not in EXPORTERS:
        raise BenchmarkError(f"format={cfg.format} is unknown: use one of {', '.join(EXPORTERS)}")
    run_dir = cli.require_model_run(cfg.run)
    run_cfg, metrics = OmegaConf.load(run_dir / "config.yaml"), read_json(run_dir / "metrics.json")
    dataset = load_dataset(run_cfg.dataset, Path(run_cfg.data_dir), Path(run_cfg.cache_dir))
    pixels = np.asarray(
        split_pixels(dataset, "test", int(metrics["image_size"]), Path(run_cfg.cache_dir)), np.float32
    )
    model = cli.load_model(run_dir)
    expected = model.predict(pixels, batch_size=cfg.batch_size, verbose=0)
    folder = run_dir / "exports" / cfg.format
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        started = time.perf_counter()
        exported, writer = EXPORTERS[cfg.format](model, folder)
        export_s = time.perf_counter() - started
        batches = range(0, len(pixels), cfg.batch_size)
        got = np.concatenate([exported(pixels[i : i + cfg.batch_size]) for i in batches])
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    difference = float(np.max(np.abs(got - expected)))
    record = {"format": cfg.format, "writer": writer, "export_s": export_s, "n_images": len(pixels),
              "max_abs_difference": difference, "tolerance": float(cfg.tolerance),
              "passed": difference <= cfg.tolerance}
    if not record["passed"]:
        shutil.rmtree(folder, ignore_errors=True)
        raise BenchmarkError(
            f"the {cfg.format} export differs from the Keras model by up to {difference:.2g} on the run's "
            f"{len(pixels)} test images (tolerance {cfg.tolerance:g}): not written; try another format"
        )
    write_json(folder / "parity.json", record)
    print(f"{folder}: max |probability difference| {difference:.2g} on {len(pixels)} test images")
    return folder


if __name__ == "__main__":
    cli.main("export", work)
