"""What a backbone costs to deploy: parameters, size on disk, latency, throughput and memory."""

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import psutil
import tensorflow as tf
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from backbones.extractor import Forward, batch_free_forward
from benchmark.files import digest, lock_path, mark_used, read_json, write_json
from benchmark.runs.provenance import machine


def parameter_counts(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {"params_total": int(model.count_params()), "params_trainable": trainable}


MIN_TIMED_CALLS = 5  # a median of fewer calls would follow one slow call


def timed_calls(
    forward: Forward, batch: np.ndarray, warmup: int, repeats: int, budget_s: float | None = None
) -> list[float]:
    """Seconds per call of `forward` (a model's graph, an engine's session) after `warmup`
    untimed calls (tracing and allocation happen there): `repeats` calls, or fewer once `budget_s` seconds
    are timed and MIN_TIMED_CALLS are done (timeit's autorange, the other way round: a 300-ms call's
    median is as steady after 5 calls as a 20-ms call's after 20, and timing VGG19 23 times cost 8 s)."""
    for _ in range(warmup):
        forward(batch)
    times: list[float] = []
    while len(times) < repeats and not (
        budget_s is not None and len(times) >= MIN_TIMED_CALLS and sum(times) >= budget_s
    ):
        started = time.perf_counter()
        forward(batch)
        times.append(time.perf_counter() - started)
    return times


def speed(
    model: keras.Model,
    image_size: int,
    cfg: DictConfig,
    throughput_ips: float | None = None,
    forward: Forward | None = None,
) -> dict:
    """Median latency at batch 1 (ms/image) and throughput at `throughput_batch` (images/s) of `forward`
    (pixels -> probabilities), by default the model's graph with a free batch dimension, traced once
    for both batch sizes. A throughput already measured (a frozen run's feature extraction, same
    network and batch size) is not measured again."""
    forward = forward or batch_free_forward(model)
    rng = np.random.default_rng(0)
    single = rng.integers(0, 256, (1, image_size, image_size, 3)).astype(np.float32)
    calls = timed_calls(forward, single, cfg.warmup, cfg.latency_runs, cfg.latency_budget_s)
    if throughput_ips is None:
        batch = rng.integers(0, 256, (cfg.throughput_batch, image_size, image_size, 3)).astype(np.float32)
        per_batch = statistics.median(timed_calls(forward, batch, 1, cfg.throughput_batches))
        throughput_ips = cfg.throughput_batch / per_batch
    return {
        "latency_ms": statistics.median(calls) * 1000,
        "latency_calls": len(calls),
        "throughput_ips": throughput_ips,
    }


def gpu_present() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


@contextmanager
def peak_memory(interval_s: float = 0.05) -> Iterator[dict[str, float | None]]:
    """Sample this process's resident memory while the block runs; the dict is filled in at exit.

    The process-wide peak (ru_maxrss) would give every cell of a sweep the peak of all cells before it.
    """
    process, done = psutil.Process(), threading.Event()
    peak = [process.memory_info().rss]

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], process.memory_info().rss)

    if gpu_present():
        tf.config.experimental.reset_memory_stats("GPU:0")
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    found: dict[str, float | None] = {}
    try:
        yield found
    finally:
        done.set()
        watcher.join()
        found["peak_memory_mb"] = max(peak[0], process.memory_info().rss) / 2**20
        found["peak_gpu_memory_mb"] = (
            tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu_present() else None
        )


def measure(
    model: Callable[[], keras.Model],
    image_size: int,
    size_mb: float | None,
    cfg: DictConfig,
    key: tuple,
    cache_dir: Path,
    throughput_ips: float | None = None,
    forward: Callable[[], Forward] | None = None,
) -> dict:
    """Size on disk (`size_mb`), parameter counts and `speed`; the last two measured once per key
    (architecture, training mode, the head's size, input size, settings, machine) and read back after:
    the seeds of a backbone are the same network, so timing each of them again measures nothing new.
    `model` is called only on a miss (it may build the network), and `forward` too (the pass to time;
    default: the model's)."""
    path = (
        cache_dir / "efficiency" / f"{digest(*key, image_size, OmegaConf.to_container(cfg), machine())}.json"
    )
    with FileLock(lock_path(path)):
        if path.exists():
            mark_used(path)
            return {"model_size_mb": size_mb} | read_json(path) | {"efficiency_from_cache": True}
        built = model()
        timed = forward() if forward else None
        found = parameter_counts(built) | speed(built, image_size, cfg, throughput_ips, timed)
        write_json(path, found)
    return {"model_size_mb": size_mb} | found | {"efficiency_from_cache": False}
