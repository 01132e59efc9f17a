"""Run directories in, leaderboard.md + leaderboard.csv + figures/ out: the report's whole flow."""

import logging
from pathlib import Path

from omegaconf import DictConfig

from benchmark.errors import BenchmarkError
from benchmark.files import write_text
from benchmark.report.document import document, figure_links
from benchmark.report.figures import write_figures
from benchmark.report.load import Collection, collect
from benchmark.report.stats import METRIC_NAMES, Row, group_rows, rank
from benchmark.report.tables import leaderboard_frame

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    """Fail before reading anything when an option cannot work, naming the valid values."""
    if cfg.primary_metric not in METRIC_NAMES:
        raise BenchmarkError(
            f"primary_metric={cfg.primary_metric} is not a rankable metric: "
            f"use one of {', '.join(METRIC_NAMES)}"
        )
    if not 0 < cfg.ci_level < 1:
        raise BenchmarkError(f"ci_level={cfg.ci_level} must lie strictly between 0 and 1 (e.g. 0.95)")
    if cfg.n_bootstrap < 1:
        raise BenchmarkError(f"n_bootstrap={cfg.n_bootstrap} must be at least 1 (e.g. 1000)")


def load(results_dir: Path) -> Collection:
    """Every run directory, sorted; no complete run at all is the user's to fix, so say how."""
    runs_root = results_dir / "runs"
    found = collect(results_dir)
    for failure in found.failed:
        log.warning("failed run %s: %s: %s", failure.rel, failure.error_type, failure.error)
    if not found.runs:
        raise BenchmarkError(
            f"no complete runs under {runs_root}: run `make sweep` or `python -m benchmark` first"
        )
    log.info(
        "%d complete, %d failed, %d skipped run directories under %s",
        len(found.runs),
        len(found.failed),
        len(found.skipped),
        runs_root,
    )
    return found


def build_report(cfg: DictConfig) -> Path:
    """Write leaderboard.csv, the figures and leaderboard.md (last, as it links the rest); its path."""
    check_config(cfg)
    results_dir = Path(cfg.results_dir)
    if cfg.ensemble_k:
        from benchmark.ensemble import build_ensembles  # the ensemble reads runs the way the report does

        build_ensembles(results_dir, cfg.ensemble_k, strict=False)  # never lose the leaderboard over it
    collection = load(results_dir)
    ranked: dict[str, list[Row]] = {
        dataset: rank(rows, cfg.primary_metric)
        for dataset, rows in sorted(group_rows(collection.runs).items())
    }
    csv_path = results_dir / "leaderboard.csv"
    write_text(csv_path, leaderboard_frame(ranked).to_csv(index=False))
    log.info("wrote %s", csv_path)
    figures = {
        dataset: figure_links(write_figures(rows, dataset, cfg, results_dir / "figures"), results_dir)
        for dataset, rows in ranked.items()
    }
    markdown_path = results_dir / "leaderboard.md"
    write_text(markdown_path, document(collection, ranked, figures, cfg))
    log.info("wrote %s", markdown_path)
    return markdown_path
