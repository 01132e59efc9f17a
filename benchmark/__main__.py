"""`python -m benchmark [overrides]`: compose the Hydra config, run once, report errors in one line."""

import logging
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the log
os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach `cli` instead of Hydra's exit(1)

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from benchmark.cli import one_line, or_fail, run_hydra  # noqa: E402
from benchmark.errors import BenchmarkError  # noqa: E402

log = logging.getLogger("benchmark")
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def in_sweep() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_cell(cfg: DictConfig, figure_worker: bool = False) -> float:
    """The cell's best validation loss: read from its finished run directory (checked without importing
    TensorFlow, so a complete sweep run again costs seconds), else trained now. `figure_worker`: the
    run's figures are drawn by the sweep's worker process, started by the first cell that trains."""
    from benchmark.runs.identity import at_probe_defaults, ignored_by_probe
    from benchmark.runs.resume import completed
    from benchmark.runs.settings import check_model_and_settings

    sweep = in_sweep()  # a bad value not part of the run's identity (runtime.threads=-3) is no skip either
    identity = check_model_and_settings(cfg)
    if ignored := ignored_by_probe(cfg):  # hashed at their defaults: the probe's run of the defaults
        log.warning("train=%s does not read %s: ignored (the %s run is that of their defaults)",
                    cfg.train.mode, ", ".join(ignored), cfg.train.mode)
        at_probe_defaults(cfg)
    check = completed(cfg, identity, in_sweep=sweep)
    if check.done is not None:
        return float(check.done["best_val_loss"])
    if figure_worker:
        from benchmark.figures import background

        background.start()  # it imports the plotting libraries while this process imports TensorFlow
    # A single run complete but out of date: the data its check loaded is the run's (not loaded or prepared
    # again). A sweep's check used the data loaded once for every cell (resume.dataset_of), which a file
    # changed since would not match: the run checks and loads its own.
    handed = None if sweep else check
    run = pipeline_run(cfg, prepare=handed is None or handed.dataset is None)
    return float(run(cfg, handed)["best_val_loss"])


def pipeline_run(cfg: DictConfig, prepare: bool = True):
    """The pipeline's run function (importing TensorFlow, while a spawned process prepares the dataset
    unless `prepare` is false: this process has loaded it), its thread pools sized to the launcher first:
    they can be sized only before TensorFlow's first operation in the process. A dataset.path or
    backbone.weights file that is not there, or a bad value (`settings.check_run`), stops it before any of
    that."""
    from benchmark.data import ahead
    from benchmark.runs.settings import check_run

    check_run(cfg)
    first = "tensorflow" not in sys.modules  # a process's first run
    preparing = ahead.start(cfg) if first and prepare else None
    from benchmark.runs import threads
    from benchmark.runs.pipeline import run
    from benchmark.runs.slate import freeze_imports

    threads.configure(threads.threads_for(cfg.runtime.threads, HydraConfig.get().launcher))
    freeze_imports()
    ahead.wait(preparing)
    return run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one configuration; returns the best validation loss, for Hydra sweepers to minimise.

    Never a test metric: a sweeper optimising on it would be model selection on the test set.

    In a sweep, a failing cell (out of memory, a bad image, a search refused) is recorded in its run
    directory and the sweep goes on; the report lists it. A single run reports user errors in one line,
    exit 2; so does a sweep preset run without --multirun, before any work.
    """
    if not in_sweep():
        or_fail(lambda: refuse_sweep_preset(HydraConfig.get()), debug=cfg.debug)
    if cfg.get("hparams_search"):  # an Optuna study of this backbone on a validation metric
        return search_cell(cfg)
    if not in_sweep():
        return or_fail(lambda: run_cell(cfg), debug=cfg.debug)
    if cfg.explain.in_sweep == "best_seed":  # Grad-CAM once per row, after the sweep (after_sweep.py)
        with open_dict(cfg):  # a cell with its frozen backbone in memory keeps what those maps need
            cfg.explain.after_sweep_images, cfg.explain.n_images = cfg.explain.n_images, 0
    try:  # every cell in this process (Hydra's basic launcher): a worker draws the figures meanwhile
        return run_cell(cfg, figure_worker=HydraConfig.get().launcher._target_ == BASIC_LAUNCHER)
    except Exception as error:
        return failed_cell(cfg, error)


def search_cell(cfg: DictConfig) -> float | None:
    """An Optuna study (runs/search.py); its settings are checked before TensorFlow's import and the data.
    Alone, a refusal is the one-line exit 2; in a sweep it is this cell's failure and the next cell runs
    (settings refused for every cell of its batch stopped the sweep before the batch's first cell:
    settings.check_sweep)."""
    from benchmark.runs.search import search, study_name
    from benchmark.runs.search_space import check_search

    if not in_sweep():
        or_fail(lambda: check_search(cfg), debug=cfg.debug)
        return or_fail(lambda: search(cfg, pipeline_run(cfg)), debug=cfg.debug)
    try:  # refused before any data: such a cell never runs its study, so its record names none
        check_search(cfg)
        run = pipeline_run(cfg)
    except Exception as error:
        return failed_cell(cfg, error)
    try:
        return search(cfg, run)
    except Exception as error:
        try:  # names the data's version: loads the data (once per process) if the study did not
            study = study_name(cfg)
        except Exception:  # a config too broken to name its study: the failure is still recorded
            study = None
        return failed_cell(cfg, error, study)


def failed_cell(cfg: DictConfig, error: Exception, study: str | None = None) -> None:
    """A sweep's failing cell: recorded in its run directory (failed.json, which the report lists) and
    logged in one line, so the sweep goes on; None tells the progress callback it failed. debug=true
    raises it instead."""
    if cfg.debug:
        raise error
    from benchmark.runs.pipeline import record_failure
    from benchmark.runs.progress import current_cell

    record_failure(cfg, error, study)
    log.error("cell %s FAILED: %s", current_cell(cfg), one_line(error))
    return None


def refuse_sweep_preset(hydra_cfg: DictConfig) -> None:
    """A single run whose config sweeps keys (a multirun preset such as +sweep=all_backbones) would train
    one configuration that reads as the preset's whole sweep: stop it, naming the preset and --multirun."""
    from benchmark.cli import in_option_file

    typed = {override.split("=", 1)[0].lstrip("+~") for override in hydra_cfg.overrides.task}
    params = (hydra_cfg.sweeper.get("params") or {}).items()  # a sweeper may have no params at all
    swept = {key.lstrip("+~"): value for key, value in params if key.lstrip("+~") not in typed}
    if not swept:  # none, or each swept key set on the command line: the multirun would be this one run
        return
    presets = [f"{group}={option}" for group, option in hydra_cfg.runtime.choices.items() if option
               and not group.startswith("hydra/") and in_option_file(group, option, "hydra.sweeper.params")]
    command = " ".join(["python -m benchmark --multirun", *map(shlex.quote, hydra_cfg.overrides.task)])
    raise BenchmarkError(
        f"{' and '.join(presets) or 'hydra.sweeper.params'} sweeps "
        f"{' '.join(f'{key}={value}' for key, value in swept.items())}: add --multirun ({command})"
    )


if __name__ == "__main__":
    run_hydra(main)
    from benchmark.runs.progress import FAILED

    if FAILED:  # the leaderboard is written, the failures listed: a script or `make` still sees them
        raise SystemExit(1)
