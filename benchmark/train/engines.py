"""The engine that runs the frozen extractor's forward pass: TensorFlow, ONNX Runtime or OpenVINO.

Extraction is the whole cost of a frozen run on a CPU, and ONNX Runtime runs the same exported network
faster than TensorFlow for most backbones (README, "Extraction engines": measured per backbone). The
export is written layer by layer from the Keras graph (0.05-1.3 s per backbone at 128 px on 2 cores;
tf2onnx, for a layer that writer does not know, 1.4-28 s), once per extractor: the ONNX file is kept
beside the shared extractor (`results/extractors/<…>.onnx`) and reused by every later run of it.
OpenVINO reads that ONNX file too; it is compiled in fp32 because its CPU default may be bf16, which
changes the features. Every non-TensorFlow engine is checked on its first batch against Keras: features
further apart than PARITY_TOLERANCE (relative) are refused, never cached.
"""

import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from backbones.extractor import Forward, batch_free_forward, batch_free_graph
from benchmark.errors import BenchmarkError
from benchmark.files import first_cause, load_or_remake
from benchmark.runs.layout import onnx_path

log = logging.getLogger(__name__)

ENGINES = ("tf", "onnxruntime", "openvino", "auto")
PARITY_TOLERANCE = 1e-4  # max |engine - Keras| over max |Keras| on the first batch; measured 3e-7 to 6.1e-5
ENGINE_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
REUSED = {"export_s": 0.0, "onnx_writer": None}  # what an earlier run's export cost this one


@dataclass
class Engine:
    """The forward pass in use and what it cost: `record` goes into the run's metrics."""

    name: str
    forward: Forward
    record: dict


def installed(engine: str) -> bool:
    return all(find_spec(package) for package in ENGINE_PACKAGES.get(engine, ()))


def choose(engine: str, workload: float, min_workload: float, onnx_cached: bool, gpu: bool = False) -> str:
    """The engine to use. `auto`: TensorFlow on a GPU (our ONNX Runtime runs on the CPU); else ONNX Runtime
    when its file is already exported, or when the images to extract (`workload`, in 128-px image
    equivalents) repay what it costs beyond TensorFlow's run (`min_workload`: measured end to end, the
    README's "Extraction engines"); else TensorFlow."""
    if engine not in ENGINES:
        raise BenchmarkError(f"runtime.engine={engine} is unknown: use one of {', '.join(ENGINES)}")
    if engine != "auto":
        if not installed(engine):
            raise BenchmarkError(
                f"runtime.engine={engine} needs {' and '.join(ENGINE_PACKAGES[engine])}: "
                "pip install -e '.[engines]' (or runtime.engine=tf)"
            )
        return engine
    if not gpu and installed("onnxruntime") and (onnx_cached or workload >= min_workload):
        return "onnxruntime"
    return "tf"


def workload(n_images: int, image_size: int) -> float:
    """Images to extract in 128-px equivalents: a forward pass costs about the number of pixels."""
    return n_images * (image_size / 128) ** 2


def exported(model, path: Path, tmp: Path) -> dict:
    """Write the export for `path` into `tmp` now (load_or_remake renames it into place): the seconds it
    took and who wrote it."""
    started = time.perf_counter()
    writer = write_onnx(model, tmp)
    seconds = time.perf_counter() - started
    log.info("exported the extractor to ONNX (%s) in %.1fs: %s", writer, seconds, path)
    return {"export_s": seconds, "onnx_writer": writer}


def runtime_on_export(name: str, model, path: Path, threads: int) -> tuple[Forward, dict]:
    """Runtime `name`'s forward pass on the extractor's ONNX export at `path`, exported first where missing,
    and what the export cost (`exported`: layer by layer 0.05-1.3 s per backbone at 128 px, tf2onnx
    1.4-28 s; kept, later runs reuse it). An earlier export that cannot be loaded (a truncated or corrupt
    file) is exported again with a one-line warning, as a feature cache that fails its checksum
    is rebuilt, and put back where that export fails (files.load_or_remake); a file loaded is still
    checked against Keras on the first batch (`parity_checked`)."""
    forward, record = load_or_remake(
        path, partial(reused_runtime, name, threads=threads), lambda tmp: (None, exported(model, path, tmp))
    )
    if forward is None:  # exported now: loaded once the lock is free; a fresh export that fails is an error
        forward = RUNTIMES[name](path, threads)
    return forward, record


def reused_runtime(name: str, path: Path, threads: int) -> tuple[Forward, dict] | None:
    """Runtime `name` on an earlier export and its cost to this run (none), or None where the file cannot
    be loaded (damaged: the caller exports it again)."""
    try:
        return RUNTIMES[name](path, threads), dict(REUSED)
    except Exception as error:  # onnxruntime's InvalidProtobuf, OpenVINO's RuntimeError
        log.warning("the ONNX export %s cannot be loaded (%s): exporting it again", path, first_cause(error))
    return None


def write_onnx(model, path: Path, output: str = "features", metadata: dict[str, str] | None = None) -> str:
    """`model` as ONNX at `path`, written layer by layer, or by tf2onnx for a layer that writer does not
    know; returns which of the two wrote it. `metadata` goes into the file's metadata_props (ONNX Runtime:
    session.get_modelmeta()) before its one write. The extractor's engines and `benchmark.export`'s
    classifier (output "probabilities") both go through here; both write into a temporary path or folder
    that is renamed into place."""
    from onnx import helper  # late: onnx is not needed on TF

    from backbones.onnx_graph import NotWritable, model_proto

    try:
        proto, writer = model_proto(model, output), "medbench"
    except NotWritable as reason:
        log.info("tf2onnx writes the ONNX file: %s", reason)
        proto, writer = tf2onnx_proto(model), "tf2onnx"
    if metadata:
        helper.set_model_props(proto, metadata)
    path.write_bytes(proto.SerializeToString())
    return writer


def tf2onnx_proto(model):
    """The ONNX model tf2onnx converts straight from the tf.function TensorFlow's extraction runs: Keras's
    `model.export(format="onnx")` wraps the same converter in a SavedModel archive (measured: 35 s vs 20 s
    for ResNet50). tf2onnx copies the whole graph, weights included, before each of its optimisers so it
    can undo a failing one; with TF2ONNX_CATCH_ERRORS=FALSE a failing optimiser fails the export instead,
    and the parity check stands behind the result either way."""
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx  # the numpy-2 patch Keras's own export applies

    patch_tf2onnx()
    os.environ.setdefault("TF2ONNX_CATCH_ERRORS", "FALSE")
    function = batch_free_graph(model)  # the graph TensorFlow's extraction runs (already traced)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature)
    return proto


def onnxruntime_forward(path: Path, threads: int) -> Forward:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0 = ONNX Runtime's default (every core), like TensorFlow's
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name  # model_proto's one output
    return lambda batch: session.run([output], {name: batch})[0]


def openvino_forward(path: Path, threads: int) -> Forward:
    import openvino

    config = {"INFERENCE_PRECISION_HINT": "f32"}  # not bf16: it moves features (cosine down to 0.85)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch})[0].copy()  # model_proto's one output


RUNTIMES = {"onnxruntime": onnxruntime_forward, "openvino": openvino_forward}


def parity_checked(name: str, forward: Forward, keras_forward: Forward, record: dict) -> Forward:
    """`forward`, whose first batch is compared with Keras's; a difference above the tolerance stops
    the extraction (nothing is cached) with a one-line error naming the fix."""

    def checked(batch: np.ndarray) -> np.ndarray:
        if "parity_max_rel" in record:
            return forward(batch)
        got, expected = forward(batch), keras_forward(batch)
        scale = float(np.max(np.abs(expected))) or 1.0
        record["parity_max_rel"] = float(np.max(np.abs(got - expected))) / scale
        if record["parity_max_rel"] > PARITY_TOLERANCE:
            raise BenchmarkError(
                f"runtime.engine={name}: features differ from Keras's by {record['parity_max_rel']:.2g} "
                f"(relative) on the first batch, above {PARITY_TOLERANCE:g}: nothing cached; "
                "use runtime.engine=tf"
            )
        return got

    return checked


def engine(name: str, model, extractor_file: Path, threads: int) -> Engine:
    """The forward pass of `model` (the Keras extractor saved at `extractor_file`) under engine `name`."""
    keras_forward = batch_free_forward(model)
    if name == "tf":
        return Engine("tf", keras_forward, {"engine": "tf"})
    path = onnx_path(extractor_file)
    forward, export = runtime_on_export(name, model, path, threads)
    record = {"engine": name, "version": version(name), "onnx_file": path.name, **export}
    return Engine(name, parity_checked(name, forward, keras_forward, record), record)
