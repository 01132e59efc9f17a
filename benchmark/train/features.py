"""Frozen-backbone features, cached per split and reused per image.

On a 2-core CPU a backbone's forward pass is the whole cost of a frozen run, so seeds, head settings
and re-runs reuse the cached arrays instead of recomputing them. A split's entry is keyed on its images
(content hashes, in order), their decoding and the extractor, not on labels, groups or which split an
image fell in. Where an entry is missing, the rows of images that another entry of the same extractor
and decoding already holds are copied from it and only the others pass the network: a relabelled image,
a new split seed or ten added images cost the forward passes of the images not seen before, not of the
whole dataset. (A recalibrated random-init extractor depends on the train images, so its key, and with
it every entry's, changes with the data: nothing is reused across data versions there.)
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from backbones.extractor import batch_free_forward
from benchmark.data import Dataset
from benchmark.data.pixels import DecodedRows, split_pixels
from benchmark.files import cached_array, checksum_path, digest, is_intact, mark_used, read_json, write_json
from benchmark.train.engines import Engine, Forward

log = logging.getLogger(__name__)
TF_ENGINE = {"engine": "tf"}  # the record of TensorFlow's features (and of entries older than records)


def extract(
    extractor: keras.Model,
    pixels: np.ndarray | DecodedRows,
    batch_size: int,
    desc: str,
    steady: list | None = None,
    forward: Forward | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Pooled features of every image (of `pixels`' `rows` only, in their order, when given: a
    `DecodedRows` has no length, so it needs them), batch by batch, with a progress bar.

    The default forward is the extractor's graph with a free batch dimension
    (backbones/extractor.py): the short last batch runs as it is, without a new trace and without
    padding (the padding cost 40 of 600 images' forward passes in the default sweep). `steady`
    collects (images, seconds) of the full batches after the first (which pays for tracing): the
    backbone's throughput at this batch size, measured on the run's own images. `forward` runs the
    batches under another engine (engines.py).
    """
    forward = forward or batch_free_forward(extractor)
    dim = extractor.output_shape[-1]
    count = len(pixels) if rows is None else len(rows)
    features = np.empty((count, dim), dtype=np.float32)
    for start in tqdm(range(0, count, batch_size), desc=desc, unit="batch", leave=False):
        chosen = slice(start, start + batch_size) if rows is None else rows[start : start + batch_size]
        batch = np.asarray(pixels[chosen], dtype=np.float32)
        n = len(batch)
        started = time.perf_counter()
        features[start : start + n] = forward(batch)
        if steady is not None and start > 0 and n == batch_size:
            steady.append((n, time.perf_counter() - started))
    return features


@dataclass(frozen=True)
class FeaturePlan:
    """One split's entry (`path`, its images' content hashes in row order) and, where it is not cached,
    how it will be filled: `reused` maps a row to (another entry of the same extractor and decoding
    holding that image, its row there); `to_extract` lists the rows that pass the network."""

    split: str
    path: Path
    hashes: tuple[str, ...]
    cached: bool
    reused: dict[int, tuple[Path, int]]
    to_extract: np.ndarray  # when `cached`, every row: what filling it takes if it is damaged meanwhile

    def first_source(self) -> Path:
        """An entry some reused rows come from (the first found)."""
        return next(iter(self.reused.values()))[0]


def plan_features(
    extractor_id: str, name: str, size: int, dataset: Dataset, split: str, cache_dir: Path
) -> FeaturePlan:
    """Where `split`'s features are cached for this extractor (`extractor_id`: what its weights depend
    on), and what filling them will take: known before any network is built or engine chosen."""
    hashes = dataset.image_hashes(split)
    store = digest(extractor_id, dataset.decoding, keras.__version__, tf.__version__)
    path = cache_dir / "features" / f"{dataset.name}-{split}-{name}-{size}px-{store}-{digest(hashes)}.npy"
    every_row = np.arange(len(hashes))
    mark_used(checksum_path(path))  # now, not at its read after other splits' extraction: kept by a prune
    if is_intact(path):
        return FeaturePlan(split, path, hashes, True, {}, every_row)
    reused = reusable_rows(path, store, hashes)
    to_extract = np.setdiff1d(every_row, list(reused)).astype(int)
    return FeaturePlan(split, path, hashes, False, reused, to_extract)


def rows_path(path: Path) -> Path:
    """The content hash of each row's image, beside a feature entry (written before it is in place)."""
    return path.with_suffix(".rows.json")


def reusable_rows(path: Path, store: str, hashes: tuple[str, ...]) -> dict[int, tuple[Path, int]]:
    """Row -> (an intact entry of the same extractor and decoding, not `path`, holding that row's image,
    its row there): entries of other splits, split seeds, data versions and datasets alike."""
    wanted: dict[str, list[int]] = defaultdict(list)
    for row, image_hash in enumerate(hashes):
        wanted[image_hash].append(row)
    found: dict[int, tuple[Path, int]] = {}
    for other in sorted(path.parent.glob(f"*-{store}-*.npy")):
        if not wanted:
            break
        if other == path:
            continue
        try:
            their_hashes = read_json(rows_path(other))
        except FileNotFoundError:  # a temporary file, one being written, or one removed meanwhile
            continue
        held = [(row, their_row) for their_row, image_hash in enumerate(their_hashes)
                if image_hash in wanted for row in wanted[image_hash]]
        if not held:
            continue
        mark_used(checksum_path(other))  # before its check, not at the copy: kept by a prune meanwhile
        if is_intact(other):  # hashed only where it holds a wanted image
            found.update({row: (other, their_row) for row, their_row in held if row not in found})
            wanted = {h: rows for h, rows in wanted.items() if rows[0] not in found}
    return found


class SourceRemoved(Exception):
    """An entry a plan copies rows from is gone (`python -m benchmark.cache` removed it since the plan)."""


def source(entry: Path) -> np.ndarray:
    """An entry a plan copies rows from, dated again now that it is read."""
    mark_used(checksum_path(entry))
    try:
        return np.load(entry, mmap_mode="r")
    except FileNotFoundError:
        raise SourceRemoved(f"{entry.name} was removed since this run planned to copy from it") from None


def copy_reused(out: np.ndarray, reused: dict[int, tuple[Path, int]]) -> None:
    """Each reused row from its entry, one memory map per entry."""
    by_entry: dict[Path, list[tuple[int, int]]] = defaultdict(list)
    for row, (entry, their_row) in reused.items():
        by_entry[entry].append((row, their_row))
    for entry, pairs in by_entry.items():
        rows, their_rows = (np.array(part) for part in zip(*pairs, strict=True))
        out[rows] = source(entry)[their_rows]


def engine_path(path: Path) -> Path:
    """Which engine computed a feature entry (`engines`: every engine that computed one of its rows, those
    copied from other entries included) and how many of its rows were copied."""
    return path.with_suffix(".engine.json")


def engine_of(entry: Path) -> dict:
    """An entry's engine record; an entry made before records were kept: TensorFlow's."""
    try:
        return read_json(engine_path(entry))
    except FileNotFoundError:
        return dict(TF_ENGINE)


def engines_in(record: dict) -> list[str]:
    """Every engine that computed a row of the entry `record` describes (before copies: its own)."""
    return record.get("engines", [record["engine"]])


def source_records(plan: FeaturePlan) -> dict[Path, dict]:
    """The engine record of each entry this one copies rows from, read once, `plan.first_source()`'s
    first."""
    return {entry: engine_of(entry) for entry in dict.fromkeys(entry for entry, _ in plan.reused.values())}


def reused_engine(records: dict[Path, dict], engines: set[str]) -> dict:
    """The engine of an entry whose rows are all copied, by the `engines` that computed them: the one
    engine (its export not paid again), or "mixed"; its first source's `records` entry says which."""
    if len(engines) > 1:
        return {"engine": "mixed"}
    if not records:  # no rows at all
        return dict(TF_ENGINE)
    record = next(iter(records.values()))
    return {key: record[key] for key in ("engine", "version", "parity_max_rel") if key in record}


def split_features(
    plan: FeaturePlan,
    extractor: Callable[[], keras.Model],
    dataset: Dataset,
    size: int,
    cache_dir: Path,
    batch_size: int,
    steady: list | None = None,
    engine: Callable[[], Engine] | None = None,
) -> tuple[np.ndarray, bool, dict]:
    """Cached features of one split, whether they came from the cache, and the engine that computed them.

    `extractor` (and `engine`, the forward pass: TensorFlow when None) is called, and the network built,
    only when some row must pass the network. The engine is not part of the key: every engine's features
    are checked equal to Keras's (engines.py); a record beside the array says which one computed them."""
    split, path = plan.split, plan.path

    def fill(out: np.ndarray) -> None:
        records = source_records(plan)  # before the rows: a source pruned since is then missed at the copy
        engines = {name for record in records.values() for name in engines_in(record)}
        copy_reused(out, plan.reused)
        if len(plan.to_extract):
            # most of a split: its pixels cached for other uses too; a few new images: decoded as they pass
            rows = None if len(plan.to_extract) == len(out) else plan.to_extract
            few = 2 * len(plan.to_extract) < len(out)
            pixels = (DecodedRows(dataset, split, size) if few
                      else split_pixels(dataset, split, size, cache_dir))
            found = engine() if engine else None
            forward, record = (found.forward, found.record) if found else (None, dict(TF_ENGINE))
            started = time.perf_counter()
            out[plan.to_extract] = extract(extractor(), pixels, batch_size, f"features {split}", steady,
                                           forward, rows)
            log.info("features %s: %d images in %.1fs (%s), %d reused", split, len(plan.to_extract),
                     time.perf_counter() - started, record["engine"], len(plan.reused))
            engines.add(record["engine"])
        else:
            record = reused_engine(records, engines)
            log.info("features %s: all %d images reused from earlier entries", split, len(out))
        write_json(rows_path(path), list(plan.hashes))
        write_json(engine_path(path), {**record, "engines": sorted(engines),
                                       "reused_images": len(plan.reused)})

    def shape() -> tuple[int, int]:
        if plan.reused and not len(plan.to_extract):  # no network needed: the width of the reused rows
            return (len(plan.hashes), source(plan.first_source()).shape[1])
        return (len(plan.hashes), extractor().output_shape[-1])

    features, was_cached = cached_array(path, shape, "float32", fill)
    return np.asarray(features), was_cached, engine_of(path)
