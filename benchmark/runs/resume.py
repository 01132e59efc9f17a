"""Is this run already done? Answered without TensorFlow, so a complete sweep run again costs seconds.

A run counts as done when its directory is complete and its data and weights file are still what it was
trained on (otherwise it runs again, saying why).
"""

import logging
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from backbones.identity import IMAGENET_UNAVAILABLE, weights_file, weights_id_of_file
from benchmark.data import Dataset, load_dataset
from benchmark.files import digest
from benchmark.runs import layout, tracking
from benchmark.runs.identity import RunIdentity

log = logging.getLogger(__name__)


def still_valid(cfg: DictConfig, run_dir: Path, dataset: Dataset, previous: dict) -> bool:
    """A complete run (`previous`: its metrics.json) counts only if its data and weights file are still what
    it was trained on."""
    now = dataset.fingerprint
    if previous.get("dataset_fingerprint") not in (None, now):
        log.warning(
            "%s was trained on other data (fingerprint %s, now %s): running it again",
            run_dir,
            previous["dataset_fingerprint"],
            now,
        )
        return False
    if previous.get("weights_used") == IMAGENET_UNAVAILABLE:
        log.warning("%s used random weights because ImageNet was unavailable; force=true re-runs it", run_dir)
    weights = weights_file(cfg.backbone)
    if weights is not None and previous.get("weights_id") != weights_id_of_file(weights):
        log.warning("%s was trained from another version of %s: running it again", run_dir, weights)
        return False
    return True


_LAST: dict[str, Dataset] = {}  # the dataset last loaded in this process, by its configuration


def dataset_of(cfg: DictConfig) -> Dataset:
    """The configured dataset, loaded once per process for the resume checks of a sweep's cells (loading
    it again for each of 21 checks was most of a complete sweep's time; a file changed while that sweep
    runs is noticed by the next one). One entry only, so a sweep over datasets holds one."""
    key = digest(OmegaConf.to_container(cfg.dataset, resolve=True), cfg.data_dir, cfg.cache_dir)
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = load(cfg)
    return _LAST[key]


def load(cfg: DictConfig) -> Dataset:
    return load_dataset(cfg.dataset, Path(cfg.data_dir), Path(cfg.cache_dir))


class Check(NamedTuple):
    """What a resume check found: metrics.json of the finished run (None: it runs), the dataset if it had
    to be loaded to check, and which publication of the run it looked at (layout.published_stamp, taken
    before the check, so a run another process publishes after it is never trained over)."""

    done: dict | None
    dataset: Dataset | None
    stamp: tuple | None


def completed(cfg: DictConfig, identity: RunIdentity, in_sweep: bool = False) -> Check:
    stamp = layout.published_stamp(identity.run_dir)
    if cfg.force or not layout.is_complete(identity.run_dir):
        return Check(None, None, stamp)
    dataset = dataset_of(cfg) if in_sweep else load(cfg)
    return Check(still_done(cfg, identity, dataset), dataset, stamp)


def still_done(cfg: DictConfig, identity: RunIdentity, dataset: Dataset) -> dict | None:
    """metrics.json of the complete run when it still counts for this data and weights (skipped, and
    tracked if it was made with a logger and not tracked yet), else None: it runs again."""
    done = layout.read_metrics(identity.run_dir)
    if not still_valid(cfg, identity.run_dir, dataset, done):
        return None
    log.info("skip: %s is complete%s", identity.run_dir, "" if cfg.force else " (force=true re-runs it)")
    if cfg.get("logger"):  # MLflow is imported only for a run made with a logger and not tracked yet
        tracking.track_if_untracked(cfg, identity.dataset, identity.run_dir, done)
    return done


def published_meanwhile(
    cfg: DictConfig, identity: RunIdentity, dataset: Dataset, stamp: tuple | None
) -> dict | None:
    """metrics.json of the run when another run published it after `stamp` (Check.stamp, taken before
    this run's resume check), while this one loaded its data or waited for the run's lock, and it counts
    for this data: not trained again, even with force=true (that run is new; in one process, a repeated
    configuration whose earlier run is still being published counts as published meanwhile). Else None."""
    if layout.published_stamp(identity.run_dir) in (None, stamp) or not layout.is_complete(identity.run_dir):
        return None
    log.info("%s was published by another run meanwhile", identity.run_dir)
    return still_done(cfg, identity, dataset)
