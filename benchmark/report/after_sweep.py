"""The leaderboard at the end of a multirun, built from the `results_dir` that sweep itself wrote.

A Hydra callback (conf/config.yaml, hydra.callbacks): whatever way the user named the results folder,
the leaderboard can never be built from another (older) one. Hydra calls it in the process that
launched the sweep, whichever launcher ran the cells.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # the report's modules (pandas, scikit-learn) are imported only at the sweep's end
    from benchmark.report.load import Collection

log = logging.getLogger(__name__)


def build_leaderboard(
    config: DictConfig, meanwhile: Callable[[], None] | None = None, collection: Collection | None = None
) -> None:
    """conf/report.yaml with the sweep's results_dir and `report.ensemble_k`; a report error is logged,
    never raised (the runs are complete either way, and `make report` can be run again). `meanwhile`:
    the missing Grad-CAM maps, made while the sweep's worker draws the leaderboard's figures;
    `collection`: the run directories as read to find them, so the report does not read them again."""
    from benchmark.cli import CONF
    from benchmark.errors import BenchmarkError
    from benchmark.report.build import build_report

    report_cfg = OmegaConf.load(CONF / "report.yaml")
    report_cfg.results_dir = str(Path(config.results_dir))
    report_cfg.ensemble_k = config.report.ensemble_k
    try:
        log.info("leaderboard: %s", build_report(report_cfg, meanwhile, collection))
    except BenchmarkError as error:
        log.error("no leaderboard: %s", error)
        if meanwhile is not None:
            meanwhile()  # the report stopped before the maps' turn (build_report raises only before it)


def maps_wanted(config: DictConfig) -> bool:
    """Whether the sweep makes Grad-CAM panels at its end (once per leaderboard row, of a saved model)."""
    explain = config.explain
    return explain.in_sweep == "best_seed" and bool(explain.n_images) and bool(config.train.save_model)


def missing_maps(config: DictConfig, collection: Collection) -> list[Path]:
    """The validation-best seed of every row the leaderboard shows, where its Grad-CAM panels are missing
    (one set per backbone instead of one per cell: the maps of the seeds differ only in the head)."""
    from benchmark.report.rows import best_seed_runs

    return [run_dir for run_dir in best_seed_runs(collection.runs, Path(config.results_dir))
            if not (run_dir / "gradcam.png").exists()]


def explain_runs(config: DictConfig, run_dirs: list[Path]) -> None:
    """Grad-CAM panels for these runs with the sweep's `explain` settings; an error is logged. With
    `logger=mlflow`, each panel and its scores join its run's MLflow run."""
    from benchmark.cli import CONF
    from benchmark.errors import BenchmarkError
    from benchmark.explain import explain_run  # TensorFlow: only when a map is missing

    explain_cfg = OmegaConf.load(CONF / "explain.yaml")
    explain_cfg.n_images, explain_cfg.seed = config.explain.n_images, config.explain.seed
    for run_dir in run_dirs:
        explain_cfg.run = str(run_dir)
        try:
            scores = explain_run(explain_cfg)
        except BenchmarkError as error:
            log.error("no Grad-CAM for %s: %s", run_dir, error)
            continue
        if config.get("logger"):
            track_explained(run_dir, scores)


def track_explained(run_dir: Path, scores: dict) -> None:
    """Add a run's Grad-CAM to the MLflow run it was tracked in (mlflow_run.json); a failure is logged,
    never raised (a tracking server down must not stop the report): the panel stays in the run directory."""
    from benchmark.runs import tracking

    tracking.never_raising(lambda: tracking.log_added(run_dir, scores), f"the Grad-CAM of {run_dir}",
                           "it is in the run directory")


class SweepLeaderboard(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from benchmark.figures import background
        from benchmark.report.load import collect

        background.settle()  # the runs still waiting for their figures are published first
        collection = collect(Path(config.results_dir)) if maps_wanted(config) else None  # read once
        missing = missing_maps(config, collection) if collection is not None else []
        make_maps = partial(explain_runs, config, missing) if missing else None
        if config.report.after_sweep:
            build_leaderboard(config, make_maps, collection)
        elif make_maps is not None:
            make_maps()
        background.stop()
