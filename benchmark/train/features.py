"""Frozen-backbone features, computed once per (dataset content, split, backbone, weights, size).

On a 2-core CPU a backbone's forward pass is the whole cost of a frozen run, so seeds, head settings
and re-runs reuse the cached arrays instead of recomputing them.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from backbones.extractor import batch_free_forward
from benchmark.data import Dataset
from benchmark.data.pixels import split_pixels
from benchmark.files import cached_array, digest, read_json, write_json
from benchmark.train.engines import Engine, Forward

log = logging.getLogger(__name__)


def extract(
    extractor: keras.Model,
    pixels: np.ndarray,
    batch_size: int,
    desc: str,
    steady: list | None = None,
    forward: Forward | None = None,
) -> np.ndarray:
    """Pooled features of every image, batch by batch, with a progress bar.

    The default forward is the extractor's graph with a free batch dimension
    (backbones/extractor.py): the short last batch runs as it is, without a new trace and without
    padding (the padding cost 40 of 600 images' forward passes in the default sweep). `steady`
    collects (images, seconds) of the full batches after the first (which pays for tracing): the
    backbone's throughput at this batch size, measured on the run's own images. `forward` runs the
    batches under another engine (engines.py).
    """
    forward = forward or batch_free_forward(extractor)
    dim = extractor.output_shape[-1]
    features = np.empty((len(pixels), dim), dtype=np.float32)
    for start in tqdm(range(0, len(pixels), batch_size), desc=desc, unit="batch", leave=False):
        batch = np.asarray(pixels[start : start + batch_size], dtype=np.float32)
        n = len(batch)
        started = time.perf_counter()
        features[start : start + n] = forward(batch)
        if steady is not None and start > 0 and n == batch_size:
            steady.append((n, time.perf_counter() - started))
    return features


def split_features(
    extractor: Callable[[], keras.Model],
    name: str,
    size: int,
    dataset: Dataset,
    split: str,
    weights_id: str,
    cache_dir: Path,
    batch_size: int,
    steady: list | None = None,
    engine: Callable[[], Engine] | None = None,
) -> tuple[np.ndarray, bool, dict]:
    """Cached features of one split, whether they came from the cache, and the engine that computed them.

    `extractor` (and `engine`, the forward pass: TensorFlow when None) is called, and the network built,
    only when the entry must be computed; `name` and `size` key the entry. The engine is not part of the
    key: every engine's features are checked equal to Keras's (engines.py); a record beside the array
    says which one computed them."""
    key = digest(dataset.fingerprint, split, name, weights_id, size, keras.__version__, tf.__version__)
    path = cache_dir / "features" / f"{dataset.name}-{split}-{name}-{size}px-{key}.npy"

    def fill(out: np.ndarray) -> None:
        pixels = split_pixels(dataset, split, size, cache_dir)
        found = engine() if engine else None
        forward, record = (found.forward, found.record) if found else (None, {"engine": "tf"})
        started = time.perf_counter()
        out[:] = extract(extractor(), pixels, batch_size, f"features {split}", steady, forward)
        log.info("features %s: %d images in %.1fs (%s)", split, len(pixels), time.perf_counter() - started,
                 record["engine"])
        write_json(record_path, record)

    def shape() -> tuple[int, int]:
        return (len(dataset.splits[split]), extractor().output_shape[-1])

    record_path = path.with_suffix(".engine.json")
    features, was_cached = cached_array(path, shape, "float32", fill)
    record = read_json(record_path) if record_path.exists() else {"engine": "tf"}  # older caches: TF
    return np.asarray(features), was_cached, record
