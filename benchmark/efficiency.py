"""What a backbone costs to deploy: parameters, size on disk, latency, throughput and memory."""

import resource
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig


def parameter_counts(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {"params_total": int(model.count_params()), "params_trainable": trainable}


def timed_calls(model: keras.Model, batch: np.ndarray, warmup: int, repeats: int) -> list[float]:
    """Seconds per call after `warmup` untimed calls (tracing and allocation happen there)."""
    for _ in range(warmup):
        model.predict_on_batch(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - started)
    return times


def speed(model: keras.Model, image_size: int, cfg: DictConfig) -> dict[str, float]:
    """Median latency at batch 1 (ms/image) and throughput at `throughput_batch` (images/s)."""
    rng = np.random.default_rng(0)
    single = rng.integers(0, 256, (1, image_size, image_size, 3)).astype(np.float32)
    batch = rng.integers(0, 256, (cfg.throughput_batch, image_size, image_size, 3)).astype(np.float32)
    latency = statistics.median(timed_calls(model, single, cfg.warmup, cfg.latency_runs))
    per_batch = statistics.median(timed_calls(model, batch, 1, cfg.throughput_batches))
    return {"latency_ms": latency * 1000, "throughput_ips": cfg.throughput_batch / per_batch}


def peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process, and of the first GPU when there is one."""
    host_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    gpu_mb = None
    if tf.config.list_physical_devices("GPU"):
        gpu_mb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return {"peak_memory_mb": host_mb, "peak_gpu_memory_mb": gpu_mb}


def measure(model: keras.Model, image_size: int, model_file: Path | None, cfg: DictConfig) -> dict:
    """All efficiency figures of the assembled model."""
    size_mb = model_file.stat().st_size / 1e6 if model_file is not None else None
    return (
        parameter_counts(model) | {"model_size_mb": size_mb} | speed(model, image_size, cfg) | peak_memory()
    )
