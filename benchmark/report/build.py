"""Run directories in, leaderboard.md, leaderboard.csv, runs.csv and figures/ out: the report's whole flow."""

import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from benchmark.errors import BenchmarkError
from benchmark.files import digest, write_text
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import RANKABLE
from benchmark.report.document import document, figure_links, gradcam_links
from benchmark.report.ensemble import with_ensembles, without_outdated_ensembles
from benchmark.report.load import Collection, Run, collect
from benchmark.report.rows import Row, choose_on_validation, group_rows, rank, with_estimates
from benchmark.report.tables import leaderboard_frame, runs_frame
from benchmark.runs.layout import ENSEMBLE, EXTERNAL, run_dirs, runs_root

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    """Fail before reading anything when an option cannot work, naming the valid values."""
    from benchmark.runs.settings import ENSEMBLE_K, check_settings

    check_settings(cfg, {"ensemble_k": ENSEMBLE_K})
    if cfg.primary_metric not in RANKABLE:
        raise BenchmarkError(
            f"primary_metric={cfg.primary_metric} is not a rankable metric: use one of {', '.join(RANKABLE)}"
        )


def load(results_dir: Path, ensemble_k: int = 0, found: Collection | None = None) -> Collection:
    """Every run directory, sorted and read once per report (`found`: as the caller read them), with the
    top-`ensemble_k` ensembles built from them; failed runs and runs set aside as on old data are logged
    here, once per report; no complete run at all is the user's to fix, so say how."""
    if found is None:
        found = collect(results_dir)
    if ensemble_k:
        found = with_ensembles(results_dir, ensemble_k, found)  # never lose the leaderboard over it
    found = without_outdated_ensembles(found)
    for failure in found.failed:
        log.warning("failed run %s: %s: %s", failure.rel, failure.error_type, failure.error)
    for stale in found.stale:
        log.warning(
            "%d run(s) of %s on another version of the data (fingerprint %s, now %s): not ranked",
            len(stale.runs), stale.dataset, stale.version.fingerprint, stale.current.fingerprint,
        )
    if not found.runs:
        raise BenchmarkError(
            f"no complete runs under {runs_root(results_dir)}: "
            "run `make sweep` or `python -m benchmark` first"
        )
    log.info(
        "%d complete, %d failed, %d skipped run directories under %s",
        len(found.runs),
        len(found.failed),
        len(found.skipped),
        runs_root(results_dir),
    )
    return found


def common_settings(runs: list[Run]) -> Settings:
    """The evaluation settings of the runs (CI level, bootstrap, ECE bins): the report states the numbers
    with the settings that made them, so runs made with different settings are not pooled."""
    found = {Settings.of_run(run.metrics) for run in runs}
    if len(found) > 1:
        described = "; ".join(sorted(str(s.record()) for s in found))
        raise BenchmarkError(
            f"the runs were evaluated with different settings ({described}): report them separately "
            "(results_dir=...) or re-run the odd ones with the same evaluate.* settings and force=true"
        )
    return found.pop()


def inputs_digest(results_dir: Path, cfg: DictConfig) -> str:
    """What the leaderboard is made from: every run directory's result file (name, size, time; ensembles
    left out, they are made from the rest), each row's Grad-CAM, the report's options and its code."""
    found = []
    for path in run_dirs(results_dir):
        if path.parent.name == ENSEMBLE:
            continue
        for name in ("metrics.json", "failed.json", "predictions.csv", "gradcam.png"):
            if (path / name).exists():
                stat = (path / name).stat()
                found.append((path.relative_to(results_dir).as_posix(), name, stat.st_size, stat.st_mtime_ns))
    external = sorted(runs_root(results_dir).glob(f"*/*/*/{EXTERNAL}/*/metrics.json"))  # benchmark.evaluate
    for path in [*sorted((results_dir / "search").glob("*.json")), *external]:  # Optuna studies too
        found.append((path.relative_to(results_dir).as_posix(), path.stat().st_size, path.stat().st_mtime_ns))
    code = Path(__file__).resolve().parents[1]
    sources = [
        (p.relative_to(code).as_posix(), p.stat().st_mtime_ns)
        for folder in ("report", "metrics", "figures")
        for p in sorted((code / folder).glob("*.py"))
    ]
    # the sweep's callback loads conf/report.yaml with Hydra's own node and defaults list: not options
    options = OmegaConf.masked_copy(cfg, [key for key in cfg if key not in ("hydra", "defaults")])
    return digest(found, OmegaConf.to_yaml(options), sources, length=16)


def build_report(
    cfg: DictConfig, meanwhile: Callable[[], None] | None = None, collection: Collection | None = None
) -> Path:
    """Write leaderboard.csv, the figures and leaderboard.md (last, as it links the rest); its path.

    Nothing is rebuilt when no run, option or report code changed since the last leaderboard: `make sweep`
    on a complete sweep then ends in a second. `meanwhile` makes more of the inputs (a sweep's missing
    Grad-CAM maps, which the page links) while the figures are drawn by the sweep's worker; the
    leaderboard is then rebuilt. Its own errors (BenchmarkError) are all raised before `meanwhile` runs,
    so a caller that catches one still has the maps to make. `collection`: the run directories as the
    caller read them (the sweep's end, to find the maps to make), so that they are read once."""
    check_config(cfg)
    results_dir = Path(cfg.results_dir)
    markdown_path, stamp = results_dir / "leaderboard.md", results_dir / ".leaderboard-inputs"
    inputs = inputs_digest(results_dir, cfg)
    if meanwhile is None and markdown_path.exists() and stamp.exists() and stamp.read_text() == inputs:
        log.info("leaderboard up to date: no run, option or report code changed since it was written")
        return markdown_path
    from benchmark.figures.leaderboard import draw_figures, figures_written  # plotting: only to rebuild

    collection = load(results_dir, cfg.ensemble_k, collection)
    settings = common_settings(collection.runs)
    ranked: dict[str, list[Row]] = {}
    others: dict[str, dict[tuple[str, str, str], list[Row]]] = {}
    for dataset, rows in sorted(group_rows(collection.runs).items()):
        chosen, others[dataset] = choose_on_validation(with_estimates(rows, settings))
        ranked[dataset] = rank(chosen, cfg.primary_metric)
    not_chosen = {
        dataset: [row for family in found.values() for row in family[1:]] for dataset, found in others.items()
    }
    csv_path = results_dir / "leaderboard.csv"
    write_text(csv_path, leaderboard_frame(ranked, not_chosen).to_csv(index=False))
    every_row = {dataset: rows + not_chosen[dataset] for dataset, rows in ranked.items()}
    write_text(results_dir / "runs.csv", runs_frame(every_row, collection.stale).to_csv(index=False))
    log.info("wrote %s and runs.csv", csv_path)
    drawing = {
        dataset: draw_figures(rows, dataset, cfg, settings, results_dir / "figures")
        for dataset, rows in ranked.items()
    }
    if meanwhile is not None:
        meanwhile()
        inputs = inputs_digest(results_dir, cfg)  # with the maps it made
    figures = {
        dataset: "\n\n".join(
            block
            for block in (
                figure_links(figures_written(drawing[dataset]), results_dir),
                gradcam_links(rows, results_dir),
            )
            if block
        )
        for dataset, rows in ranked.items()
    }
    write_text(markdown_path, document(collection, ranked, others, figures, cfg, settings))
    write_text(stamp, inputs)
    log.info("wrote %s", markdown_path)
    return markdown_path
