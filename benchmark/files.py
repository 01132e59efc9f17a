"""Atomic writes and on-disk array caches: a killed process never leaves a file that looks complete."""

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def digest(*parts: object, length: int = 12) -> str:
    """A short stable hash of JSON-serialisable parts (cache keys, config hashes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """Content hash of one file, read in chunks so large images and weights files stay cheap."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Write via a temporary sibling and rename, so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def write_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Render a matplotlib figure to a hidden sibling, rename it into place, and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        import matplotlib.pyplot as plt  # only figure writers pay for importing it

        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def cached_array(
    path: Path, shape: tuple[int, ...], dtype: str, fill: Callable[[np.ndarray], None]
) -> np.ndarray:
    """Load `path` if present; else let `fill` write into a memory-mapped temp file, then rename it.

    Memory-mapping keeps big datasets (thousands of 299x299 images) out of RAM while they are written.
    """
    if path.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(array)
        array.flush()
        del array
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")
