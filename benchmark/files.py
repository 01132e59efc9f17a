"""Atomic writes and on-disk array caches: a killed process never leaves a file that looks complete.

Every file the project writes goes through `atomic_path`: it is written under a hidden temporary name
in the same folder and renamed into place, so readers (and other processes on a shared filesystem) see
the old file or the whole new one, never half of one. A file made once and kept (the frozen extractor,
its ONNX export) is read, or made again where it is missing or damaged, by `load_or_remake`.
"""

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_LENGTH = 12  # hex digits of a cache key: every cache entry's name ends in its key
WRITER_TAG = 8  # hex digits naming a writer's temporary file (`atomic_path`)


def digest(*parts: object, length: int = KEY_LENGTH) -> str:
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


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary sibling of `path` to write; on success it replaces `path` in one rename.

    The temporary name keeps the suffix (Keras and numpy choose the format by it) and is unique per
    writer, so concurrent writers never write into the same file. What is written there may also be a
    folder (a Keras model saved unzipped): it takes the place of a `path` that does not exist yet, and
    where another writer's whole folder arrived first (a lock not shared between nodes) that one is kept,
    as `publish_directory` keeps it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:WRITER_TAG]}.tmp{path.suffix}")
    try:
        yield tmp
        if tmp.is_dir():
            publish_directory(tmp, path, replace=False)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)  # never in place of the writer's own error
        else:
            tmp.unlink(missing_ok=True)


def size_bytes(path: Path) -> int:
    """A file's size, or a folder's: the sum of the files under it."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def publish_directory(staging: Path, target: Path, replace: bool) -> None:
    """Move a finished folder into place with one rename, so a half-written folder is never seen.

    `replace=True`: an existing target is swapped out only now, once the new one is complete.
    `replace=False`: a target that appeared meanwhile (a concurrent writer finished first) is kept and
    the staging folder dropped.
    """
    if replace and target.exists():
        retired = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired)
        return
    try:
        os.replace(staging, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def checksum_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


_VERIFIED: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime) already checked in this process


def is_intact(path: Path) -> bool:
    """The file exists and its content still has the checksum written beside it when it was made.

    Hashing a large cache file costs seconds, so a file is hashed once per process; a later load only
    checks that its size and modification time have not changed since.
    """
    try:
        stat = path.stat()
        if _VERIFIED.get(path) == (stat.st_size, stat.st_mtime_ns):
            return True
        intact = checksum_path(path).read_text().strip() == file_sha256(path)
    except OSError:
        return False
    if intact:
        _VERIFIED[path] = (stat.st_size, stat.st_mtime_ns)
    return intact


def cached_array(
    path: Path,
    shape: tuple[int, ...] | Callable[[], tuple[int, ...]],
    dtype: str,
    fill: Callable[[np.ndarray], None],
) -> tuple[np.ndarray, bool]:
    """(array, was_cached): `path` if it is intact; else `fill` writes into a memory-mapped temp file that
    is checksummed and renamed into place. Returns a read-only memory map either way.

    A corrupt or truncated cache file (checksum mismatch) is rebuilt, never trusted. A lock file beside
    it makes concurrent processes (sweep workers on one machine or a shared filesystem) fill one entry
    once: the second waits and then reads the first one's file. Memory-mapping keeps big datasets
    (thousands of 299x299 images) out of RAM while they are written. `shape` may be a function, called
    only when the entry must be filled (e.g. a feature width known once the network is built).
    """
    mark_used(checksum_path(path))  # before the check: `python -m benchmark.cache` then keeps it
    if is_intact(path):
        with suppress(FileNotFoundError):  # else removed meanwhile: filled again below
            return np.load(path, mmap_mode="r"), True
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path)):
        if is_intact(path):  # another process filled it while we waited
            return np.load(path, mmap_mode="r"), True
        if path.exists():
            log.warning("cache file %s does not match its checksum (corrupt or truncated): rebuilding", path)
        with atomic_path(path) as tmp:
            shape = shape() if callable(shape) else shape
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            fill(array)
            array.flush()
            del array
            write_text(checksum_path(path), file_sha256(tmp))  # before the data: data implies its checksum
    return np.load(path, mmap_mode="r"), False


def mark_used(path: Path) -> None:
    """Record that a cache entry is read now, as the modification time of `path` (a file of the entry that
    nothing else dates by it: a checksum, not the data `is_intact` dates), so `python -m benchmark.cache
    unused_days=N` removes only what no run used for N days. A read-only cache records nothing."""
    with suppress(OSError):
        os.utime(path)


def lock_path(path: Path) -> Path:
    """The lock file beside `path` that every process making or replacing `path` takes."""
    return path.with_name(f".{path.name}.lock")


def load_or_remake(path: Path, load: Callable[[Path], T | None], make: Callable[[Path], T]) -> T:
    """What `load` reads from `path`; where `path` is missing or `load` finds it damaged (returns None),
    what `make` returns after writing the file or folder at the temporary path it is given, which then
    takes `path`'s place (atomic_path).

    Under `path`'s lock, so two processes never make the same file twice. A damaged file is set aside
    (`aside_path`) and removed only once its replacement is in place: where making it fails (offline
    without the ImageNet weights, out of memory) it goes back, so what names it keeps what it had. One
    left aside by a process killed in between is put back (or, next to a finished replacement, removed)
    by the next caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path)):
        aside = aside_path(path)
        settle(path, aside)
        if path.exists():
            if (found := load(path)) is not None:
                return found
            path.rename(aside)
        try:
            with atomic_path(path) as tmp:
                return make(tmp)
        finally:
            settle(path, aside)  # removed once replaced; put back where making it failed


def aside_path(path: Path) -> Path:
    """Where a damaged file waits, a hidden sibling, until its replacement is in place."""
    return path.with_name(f".{path.name}.damaged")


def settle(path: Path, aside: Path) -> None:
    """A set-aside file back in place where `path` is missing, or removed where `path` was made again."""
    if not aside.exists():
        return
    if not path.exists():
        aside.rename(path)
    elif aside.is_dir():
        shutil.rmtree(aside)
    else:
        aside.unlink()


def first_cause(error: BaseException) -> str:
    """The exception that started a chain, on one line: Keras hides h5py's OSError behind its own; what a
    `load_or_remake` caller logs when it finds a file damaged."""
    while (earlier := error.__cause__ or error.__context__) is not None:
        error = earlier
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
