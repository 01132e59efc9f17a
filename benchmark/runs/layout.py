"""The results layout, spelled here and nowhere else: `<results_dir>/runs/<dataset>/<backbone>/<run>/`,
and `<results_dir>/extractors/`, the frozen extractors that the runs of a backbone share.

A run is complete only when `metrics.json` exists and parses (one truncated by a full disk or a broken
copy is warned about and the run is redone). Files are written into a hidden staging folder
that is renamed into place at the end, so a killed run never looks complete and a re-run with
`force=true` replaces an old run only once the new one has fully succeeded. Hidden folders at any
level are staging areas and are never listed as runs. While a process trains and publishes a run it holds
the run's lock, a hidden `.<run>.lock` beside it, so an identical command started meanwhile waits for it
and then finds the run complete instead of training it again.
"""

import logging
import os
import shutil
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from benchmark.errors import BenchmarkError
from benchmark.files import lock_path, publish_directory, read_json

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"  # the backbone folder the report files ensembles under
# What commands add to a finished run, per site or format: results of that run's model, which go with it
# when it is trained again (force=true, changed data)
EXTERNAL, EXPORTS = "external", "exports"  # <run>/external/<site>/, <run>/exports/<format>/
ADDED_LATER = (EXTERNAL, EXPORTS)  # benchmark.evaluate, benchmark.export
# A waiting process asks for the run's lock this many seconds at a time: filelock refuses an unbounded wait
# on a lock another FileLock of the same process holds, as a sweep's earlier cell of the same run does
# until the figure worker's thread publishes it.
LOCK_POLL_S = 30.0


def runs_root(results_dir: Path) -> Path:
    return Path(results_dir) / "runs"


def run_path(results_dir: Path, dataset: str, backbone: str, name: str) -> Path:
    return runs_root(results_dir) / dataset / backbone / name


def extractor_path(results_dir: Path, backbone: str, image_size: int, key: str) -> Path:
    """A Keras model saved unzipped (a folder: config.json, metadata.json, model.weights.h5), which
    `keras.models.load_model` reads like a `.keras` file; Keras writes it straight to disk instead of
    building the weights file in memory and copying it into a zip (PERFORMANCE.md: the seven extractors'
    saves 7.4 -> 5.1 s). One saved as a `.keras` file by an earlier version of medbench is used where it
    exists."""
    folder = Path(results_dir) / "extractors" / f"{backbone}-{image_size}px-{key}"
    earlier = folder.with_name(f"{folder.name}.keras")
    return earlier if earlier.is_file() else folder


def onnx_path(extractor: Path) -> Path:
    """The extractor's ONNX export, kept beside it under its name (the same for a folder and for an
    earlier version's `.keras` file, so an upgraded results folder keeps its exports)."""
    return Path(extractor).with_suffix(".onnx")


def is_saved_model(path: Path) -> bool:
    """A `.keras` file, or a folder holding both halves Keras reads: a copy that dropped the weights
    (a sync that skips `*.h5`) counts as missing, so the user gets our message, not Keras's."""
    path = Path(path)
    return path.is_file() or ((path / "config.json").is_file() and (path / "model.weights.h5").is_file())


def results_dir_of(run_dir: Path) -> Path:
    """The results folder a run directory sits in (four levels up: runs/<dataset>/<backbone>/<run>)."""
    parents = Path(run_dir).resolve().parents
    return parents[min(3, len(parents) - 1)]


def warn_replaced(run_dir: Path) -> None:
    """Before a finished run is trained again: what the later commands added to it goes with the old model
    once the new run is published (an external score or an export of the old model kept beside the new
    one would describe a model the run no longer holds; a new run that fails replaces nothing)."""
    added = sorted(f"{kind}/{path.name}" for kind in ADDED_LATER for path in Path(run_dir).glob(f"{kind}/*"))
    if added:
        log.warning("%s is trained again: once the new run is published, %s (made from the old model) are "
                    "removed with it; run benchmark.evaluate / benchmark.export again on the new one",
                    run_dir, ", ".join(added))


def run_name(seed: object, config_hash: str) -> str:
    return f"seed{seed}-{config_hash}"


def run_dirs(results_dir: Path) -> list[Path]:
    """Every visible run directory, sorted."""
    root = runs_root(results_dir)
    return sorted(
        path for path in root.glob("*/*/*")
        if path.is_dir() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def ensemble_dirs(results_dir: Path, dataset: str) -> list[Path]:
    return sorted((runs_root(results_dir) / dataset / ENSEMBLE).glob("top*-*"))


def check_writable(results_dir: Path) -> None:
    """Fail before any work when the results folder cannot be written."""
    try:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(results_dir) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise BenchmarkError(
            f"results_dir={results_dir} is not writable ({error.strerror or error}): "
            "choose a folder you can write to, e.g. results_dir=$HOME/medbench-results"
        ) from None


_CORRUPT: set[Path] = set()  # metrics files already warned about in this process


def corruption(path: Path) -> str | None:
    """What is wrong with an existing metrics.json (cut short by a full disk, a broken copy), None when it
    is a JSON object."""
    try:
        return None if isinstance(read_json(path), dict) else "not a JSON object"
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        return str(error)


def incomplete_reason(run_dir: Path) -> str | None:
    """Why a run directory is not a complete run (is_complete's rule, in words), None when it is."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return "no metrics.json"
    problem = corruption(path)
    return None if problem is None else f"its metrics.json is corrupt: {problem}"


def is_complete(run_dir: Path) -> bool:
    """`metrics.json` is written last, so it marks a finished run; one that is not a JSON object does not:
    the run is redone, not its resume check failing forever."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return False
    problem = corruption(path)
    if problem is not None and path not in _CORRUPT:  # asked by the progress, resume check, failure record
        _CORRUPT.add(path)
        log.warning("%s is corrupt (%s): running that run again", path, problem)
    return problem is None


def read_metrics(run_dir: Path) -> dict:
    return read_json(run_dir / "metrics.json")


def staging_directory(run_dir: Path) -> Path:
    """A fresh hidden sibling to write into (the report ignores hidden folders), named after this host
    and process so that a later run can tell an abandoned one from one still being written."""
    remove_abandoned_staging(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.partial-{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_abandoned_staging(run_dir: Path) -> list[Path]:
    """Delete staging folders of this run left by killed processes of this host; those of live processes
    and of other hosts (a shared filesystem) are left alone."""
    host, removed = socket.gethostname(), []
    for staging in run_dir.parent.glob(f".{run_dir.name}.partial-*"):
        owner, _, pid = staging.name.rsplit(".partial-", 1)[1].rpartition("-")
        if owner == host and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def publish(staging: Path, run_dir: Path) -> None:
    """Move a finished staging folder into place, replacing an older run only now."""
    publish_directory(staging, run_dir, replace=True)


def lock_run(run_dir: Path) -> tuple[FileLock, float]:
    """Hold the run's lock for its training and publishing: (the lock, seconds waited for it). Whoever holds
    it (another process, or in a sweep this process's earlier cell of the same run until its figures are
    drawn) makes this one wait, saying so every LOCK_POLL_S. An OS lock: a killed holder's is gone with it
    (on a filesystem without OS locks filelock falls back to a marker file, which a holder killed on another
    host leaves behind). Keyed by the run directory alone, so a sweep's other runs never wait for this one."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(run_dir), thread_local=False)  # released by the thread that publishes the run
    started = time.perf_counter()
    try:
        lock.acquire(timeout=0)
        return lock, 0.0
    except Timeout:
        log.info("%s is held by another run of the same configuration: waiting for it", run_dir)
    while True:
        try:
            lock.acquire(timeout=LOCK_POLL_S)
            break
        except Timeout:
            log.info("still waiting for %s (%.0f s so far)", run_dir, time.perf_counter() - started)
    waited = time.perf_counter() - started
    log.info("waited %.1f s for the other run that held %s", waited, run_dir)
    return lock, waited


def unlock_run(lock: FileLock, run_dir: Path) -> None:
    """Release the run's lock, its file removed while still held, so no lock file outlives the run's
    work: a process waiting on the removed file takes a new one, since filelock (>= 4.3, pyproject.toml)
    does not count a lock on a file no longer there as acquired. A file that cannot be removed stays;
    the lock is released all the same. Released already (an error path's second call): nothing, since the
    file may be another process's lock by now."""
    if not lock.is_locked:
        return
    try:
        lock_path(run_dir).unlink(missing_ok=True)
    except OSError as error:
        log.warning("could not remove the lock file of %s (%s)", run_dir, error)
    finally:
        lock.release()


def published_stamp(run_dir: Path) -> tuple[int, int, int] | None:
    """Which publication of the run is in place (metrics.json's inode, size and time; None: none), so a
    process can tell that another one published it meanwhile."""
    try:
        found = (Path(run_dir) / "metrics.json").stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns
