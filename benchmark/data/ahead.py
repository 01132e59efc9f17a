"""The dataset made ready in a spawned process while this process imports TensorFlow.

A process's first run spent ~5 s writing the default synthetic tree (600 PNGs), or decoding a new folder's
files once for the scan cache, and ~5 s importing TensorFlow, one after the other on one core while the
other idled. A spawned process (a fork would copy TensorFlow's threads) now does the first during the
second; the load that follows reads the finished tree and the scan cache (0.08 s for the default 600
images). A cold single run: 21.2 -> 20.1 s (medians of 4); a sweep's first cell, whose figure worker
imports at the same time, to its data: 7.8 -> 7.2 s (medians of 3). Both write atomically, so a
preparation interrupted halfway leaves nothing that looks complete.
"""

import logging
import multiprocessing
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from omegaconf import DictConfig

from backbones.identity import weights_cannot_stop_the_run

log = logging.getLogger(__name__)


def worth_preparing(cfg: DictConfig) -> bool:
    """A synthetic tree not written yet, or a user's folder (its files may be new to the scan cache);
    a MedMNIST .npz is read in the run itself and caches nothing. Never when the weights may stop the run
    first: it must then leave nothing written, not even a dataset."""
    from benchmark.data import files_root

    dataset = cfg.dataset
    if not weights_cannot_stop_the_run(cfg.backbone):
        return False
    if dataset.loader == "folder":  # one that is not there stopped the run before (data.check_path)
        return True
    if dataset.loader != "synthetic":
        return False
    try:
        root = files_root(dataset, Path(cfg.data_dir))
    except (ValueError, TypeError):  # the run's own load names the bad value
        return False
    return not root.is_dir()


def prepare(dataset: DictConfig, data_dir: str, cache_dir: str) -> None:
    """Load the dataset once and drop it: the tree and the scan cache stay. Silent, and any error is left
    to the run's own load, which reports it in one line (a traceback here would only repeat it)."""
    logging.disable(logging.CRITICAL)
    try:
        from benchmark.data import load_dataset

        load_dataset(dataset, Path(data_dir), Path(cache_dir))
    except Exception:
        raise SystemExit(1) from None


def start(cfg: DictConfig) -> BaseProcess | None:
    """Begin preparing the dataset in a spawned process, when worth it (the caller starts it only when
    TensorFlow is still to be imported: that import is what the preparation hides behind)."""
    if not worth_preparing(cfg):
        return None
    process = multiprocessing.get_context("spawn").Process(
        target=prepare, args=(cfg.dataset, str(cfg.data_dir), str(cfg.cache_dir)), name="dataset-ahead"
    )
    process.start()
    log.info("preparing the dataset in a spawned process while TensorFlow is imported")
    return process


def wait(process: BaseProcess | None) -> None:
    """Block until the preparation ends, before this process loads the dataset itself."""
    if process is None:
        return
    started = time.perf_counter()
    process.join()
    waited = time.perf_counter() - started
    if process.exitcode == 0:
        log.info("dataset prepared (%.1f s waited for it after the import)", waited)
    else:  # the load that follows meets the same problem and reports it
        log.info("dataset not prepared ahead (exit code %s): loading it here", process.exitcode)
