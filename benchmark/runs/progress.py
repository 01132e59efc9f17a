"""A sweep's progress line: "cell 4/21 ... ETA", and which cells failed at the end (a Hydra callback)."""

import logging
import math
import statistics
import time
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def count_cells(config: DictConfig) -> int:
    """The number of jobs Hydra's basic sweeper will launch: the product of every swept value list
    (a `glob(*)` over a config group counts that group's options, as the sweeper expands it)."""
    from hydra.core.global_hydra import GlobalHydra

    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    overrides = parser.parse_overrides([*params, *config.hydra.overrides.task])
    sizes: dict[str, int] = {}
    for override in overrides:  # in order: a command-line value replaces the config's list for its key
        swept = override.is_sweep_override()
        sizes[override.get_key_element()] = len(list(override.sweep_string_iterator())) if swept else 1
    return math.prod(sizes.values())


def cell_name(config: DictConfig) -> str:
    return f"{config.backbone.name} seed={config.seed}"


def will_skip(config: DictConfig) -> bool:
    """True when the cell's run directory is already complete (a resumed sweep)."""
    from benchmark.runs.identity import resolve
    from benchmark.runs.layout import is_complete

    try:
        return not config.force and is_complete(resolve(config).run_dir)
    except Exception:  # an unresolvable config fails in the job itself, with the proper message
        return False


class SweepProgress(Callback):
    """A Hydra callback; timings of resumed (skipped) cells are left out of the ETA."""

    def __init__(self) -> None:
        self.total, self.index, self.durations, self.failed = 0, 0, [], []
        self.started = 0.0
        self.skipping = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total = count_cells(config)
        log.info("sweep: %d cells", self.total)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.total:  # a single run, not a sweep
            return
        self.index += 1
        self.started = time.monotonic()
        self.skipping = will_skip(config)
        remaining = self.total - self.index + 1
        eta = f", ETA {statistics.mean(self.durations) * remaining / 60:.1f} min" if self.durations else ""
        state = "already complete" if self.skipping else "running"
        log.info("cell %d/%d: %s (%s%s)", self.index, self.total, cell_name(config), state, eta)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not self.total:
            return
        if job_return.status != JobStatus.COMPLETED or job_return.return_value is None:
            # None: the job caught and recorded its own failure (see benchmark.__main__)
            self.failed.append(cell_name(config))
        elif not self.skipping:
            self.durations.append(time.monotonic() - self.started)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        done = self.total - len(self.failed)
        log.info("sweep finished: %d/%d cells complete%s", done, self.total,
                 f"; FAILED: {', '.join(self.failed)}" if self.failed else "")
