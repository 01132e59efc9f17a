"""A sweep's progress line: "cell 4/21 ... ETA", and which cells failed at the end (a Hydra callback)."""

import contextlib
import functools
import json
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from benchmark.files import write_json
from benchmark.runs.threads import local_jobs

log = logging.getLogger(__name__)
FAILED: list[str] = []  # this process's sweep's failed cells, at its end: `python -m benchmark` exits 1


def swept_sizes(config: DictConfig) -> dict[str, int]:
    """How many values each key takes in the sweep Hydra's basic sweeper will launch (1 for a key set
    once; a `glob(*)` over a config group counts that group's options, as the sweeper expands it)."""
    from hydra.core.global_hydra import GlobalHydra

    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    overrides = parser.parse_overrides([*params, *config.hydra.overrides.task])
    sizes: dict[str, int] = {}
    for override in overrides:  # in order: a command-line value replaces the config's list for its key
        swept = override.is_sweep_override()
        sizes[override.get_key_element()] = len(list(override.sweep_string_iterator())) if swept else 1
    return sizes


def count_cells(config: DictConfig) -> int:
    """The number of jobs of the sweep: the product of every swept value list."""
    return math.prod(swept_sizes(config).values())


def varied_keys(config: DictConfig) -> list[str]:
    """The keys the sweep varies besides backbone and seed (train, image_size, ...): each cell's line
    names their values, or two cells of one backbone and seed read the same."""
    return [key.lstrip("+~") for key, size in swept_sizes(config).items()
            if size > 1 and key.lstrip("+~") not in ("backbone", "seed")]


def cell_name(config: DictConfig, varied: list[str] | tuple[str, ...] = ()) -> str:
    """'densenet121 seed=0', then the cell's value of each varied key: 'densenet121 seed=0 train=finetune'."""
    return named(config, config.hydra.overrides.task, varied)


def named(cfg: DictConfig, task: list[str], varied: list[str] | tuple[str, ...]) -> str:
    settings = [item.lstrip("+~") for item in task if item.split("=", 1)[0].lstrip("+~") in varied]
    return " ".join([cfg.backbone.name, f"seed={cfg.seed}", *settings])


def current_cell(cfg: DictConfig) -> str:
    """The running cell's name as its progress line gives it ('resnet50 seed=0 train=finetune'), for its
    FAILED line: in a train=frozen,finetune sweep two failures of one backbone and seed must not read the
    same. Read while the cell runs (HydraConfig is the running cell's), in whichever process runs it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return named(cfg, [], ())
    hydra = HydraConfig.get()
    return named(cfg, hydra.overrides.task, sweep_varied_keys(str(hydra.sweep.dir)))


@functools.cache
def sweep_varied_keys(sweep_dir: str) -> tuple[str, ...]:
    """varied_keys of the launching config, which Hydra's sweeper saves as multirun.yaml in the sweep's
    folder before any cell: a cell's own config holds only its one value of each key. Read once per
    process (a joblib worker or SLURM task reads its own); () when it cannot be read."""
    try:
        return tuple(varied_keys(OmegaConf.load(Path(sweep_dir) / "multirun.yaml")))
    except Exception:  # another sweeper, or the file gone: the name without the varied keys
        return ()


def configuration(config: DictConfig) -> str:
    """The cell's overrides but its seed: the cells of one configuration share everything that does not
    depend on the seed (a frozen backbone's features, its extractor, its efficiency), so its first cell is
    the slow one. Cells that differ only in a head setting share features too but count as separate
    configurations here: the ETA then overestimates them, as it did every further seed before."""
    return " ".join(sorted(item for item in config.hydra.overrides.task if not item.startswith("seed=")))


def eta(done: list[dict], total: int, configurations: int, parallel: int) -> str:
    """The time left, from the cells timed so far, counted apart for a configuration's first cell and its
    further seeds: one mean over both read 6.8 min for a default sweep that ended 1.5 min later. Cells of
    a kind not timed yet are named, not guessed."""
    seen = {cell["configuration"] for cell in done}
    first = [cell["seconds"] for cell in done if cell["first"] and not cell["skipped"]]
    further = [cell["seconds"] for cell in done if not cell["first"] and not cell["skipped"]]
    if not first and not further:
        return ""
    first_left = max(configurations - len(seen), 0)  # the running cell counts among those left
    further_left = max(total - len(done) - first_left, 0)
    left = [(first_left, first, "first-seed"), (further_left, further, "further-seed")]
    seconds = sum(count * statistics.mean(timed) for count, timed, _ in left if count and timed)
    seconds /= parallel
    parts = [f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"] if seconds else []
    parts += [f"{count} {kind} cells not timed yet" for count, timed, kind in left if count and not timed]
    return f", ETA {' + '.join(parts)}" if parts else ""


def will_skip(config: DictConfig) -> bool:
    """True when the cell's run directory is already complete (a resumed sweep)."""
    from benchmark.runs.identity import resolve
    from benchmark.runs.layout import is_complete

    try:
        return not config.force and is_complete(resolve(config).run_dir)
    except Exception:  # an unresolvable config fails in the job itself, with the proper message
        return False


def parallel_jobs(config: DictConfig) -> int:
    """How many cells the launcher runs at once (submitit's array_parallelism, joblib's n_jobs): the ETA."""
    launcher = config.hydra.launcher
    return int(launcher.get("array_parallelism") or local_jobs(launcher))


def markers(config: DictConfig) -> Path:
    """One small file per finished cell in the sweep's own folder: any process can add its own and count
    all of them, whatever order the cells finish in (no shared file is ever rewritten)."""
    return Path(config.hydra.sweep.dir) / ".progress"


def finished_cells(folder: Path) -> list[dict]:
    cells = []
    # in the sweep's order; "[0-9]*": not another worker's marker still being written (.<num>.<hex>.tmp.json)
    for path in sorted(folder.glob("[0-9]*.json"), key=lambda path: int(path.stem)):
        with contextlib.suppress(OSError, ValueError):
            cells.append(json.loads(path.read_text()))
    return cells


class SweepProgress(Callback):
    """A Hydra callback. Launchers run the job hooks in the cell's own process (a worker, a SLURM task),
    so the counts come from the marker files, not from this object; resumed (skipped) cells are left out
    of the ETA."""

    def __init__(self) -> None:
        self.total = 0  # set in the launching process; launchers pickle it into every job
        self.configurations = 0  # cells / seeds: how many of them are a configuration's first
        self.started = 0.0
        self.sweep_started = 0.0
        self.skipping = False
        self.first = True  # the cell is its configuration's first: the slow one of a frozen sweep
        self.varied: list[str] = []  # swept keys named in each cell's line besides backbone and seed

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total = count_cells(config)
        self.configurations = self.total // swept_sizes(config).get("seed", 1)
        self.varied = varied_keys(config)
        self.sweep_started = time.monotonic()
        log.info("sweep: %d cells, %d at a time", self.total, parallel_jobs(config))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.total:  # a single run, not a sweep
            return
        self.started = time.monotonic()
        self.skipping = will_skip(config)
        done = finished_cells(markers(config))
        self.first = configuration(config) not in {cell["configuration"] for cell in done}
        left = eta(done, self.total, self.configurations, parallel_jobs(config))
        state = "already complete" if self.skipping else "running"
        log.info("cell %d/%d: %s (%s; %d done%s)", config.hydra.job.num + 1, self.total,
                 cell_name(config, self.varied), state, len(done), left)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not self.total:
            return
        # a return value of None: the job caught and recorded its own failure (see benchmark.__main__)
        ok = job_return.status == JobStatus.COMPLETED and job_return.return_value is not None
        cell = {"cell": cell_name(config, self.varied), "ok": ok, "skipped": self.skipping,
                "first": self.first, "configuration": configuration(config),
                "seconds": time.monotonic() - self.started}
        write_json(markers(config) / f"{config.hydra.job.num}.json", cell)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = [cell["cell"] for cell in finished_cells(markers(config)) if not cell["ok"]]
        FAILED.extend(cell for cell in failed if cell not in FAILED)  # with any whose publishing failed
        done = self.total - len(failed)
        took = f" in {time.monotonic() - self.sweep_started:.0f} s" if self.sweep_started else ""  # started?
        log.info("sweep finished: %d/%d cells complete%s%s", done, self.total, took,
                 f"; FAILED: {', '.join(failed)}" if failed else "")
