"""The leaderboard's PNGs, one file per figure and dataset: what a reader looks at before the tables.

Each figure is a function (rows, dataset, cfg, settings, path); `settings` are the evaluation settings
the runs recorded (CI level, ECE bins), never re-stated by the report.
"""

import logging
import re
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.ticker import NullFormatter, ScalarFormatter
from omegaconf import DictConfig
from sklearn.metrics import roc_curve

from benchmark.figures import background, panels
from benchmark.figures.canvas import colours, empty_panel, plt, separate_labels, write_figure
from benchmark.figures.settings import SETTING_FIGURES
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import metric
from benchmark.report.rows import Row, error_bars, estimate, mean_of, pareto_front

log = logging.getLogger(__name__)


def bar_chart(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """The primary metric per row, ranked top to bottom, with its confidence interval."""
    primary = metric(cfg.primary_metric)
    means, errors = error_bars(rows, primary.key)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(rows)))
    palette = colours([row.label for row in rows])
    positions = np.arange(len(rows))
    ax.barh(positions, means, color=[palette[r.label] for r in rows], alpha=0.85)
    has = np.isfinite(errors).all(axis=0)
    ax.errorbar(means[has], positions[has], xerr=errors[:, has], fmt="none", ecolor="black", capsize=4)
    ends = means + np.nan_to_num(errors[1])
    for y, (mean, end) in enumerate(zip(means, ends, strict=True)):
        ax.text(end, y, f"  {mean:.{cfg.digits}f}", va="center")
    ax.set_yticks(positions, [f"#{i} {row.label}" for i, row in enumerate(rows, start=1)])
    ax.invert_yaxis()  # rank 1 on top
    upper = np.nanmax(ends) if np.isfinite(ends).any() else 1.0
    ax.set_xlim(0, max(1.0, upper) * 1.12 if primary.bounded else upper * 1.2)
    direction = "higher" if primary.higher_is_better else "lower"
    ax.set_xlabel(f"{primary.name} ({direction} is better)")
    ax.set_title(
        f"{dataset}: {primary.name}, mean over seeds and {settings.ci_level:.0%} CI\n"
        "(two-level bootstrap: test images and seeds resampled)"
    )
    ax.grid(axis="x", alpha=0.3)
    write_figure(fig, path, cfg.figures.dpi)


def accuracy_vs_latency(
    rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path
) -> None:
    """Accuracy against batch-1 latency; the Pareto front holds the rows worth choosing."""
    palette = colours([row.label for row in rows])  # before dropping rows, so colours match the other figures
    title = f"{dataset}: accuracy vs latency (error bars: {settings.ci_level:.0%} CI)"
    missing = [row.label for row in rows if not np.isfinite(mean_of(row, "latency_ms"))]
    rows = [row for row in rows if row.label not in missing]
    if missing:
        title += f"\nnot shown, no latency recorded: {', '.join(missing)}"
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if not rows:
        empty_panel(ax, title, "no run recorded latency_ms")
        write_figure(fig, path, cfg.figures.dpi)
        return
    latency = np.array([mean_of(row, "latency_ms") for row in rows])
    accuracy, errors = error_bars(rows, "accuracy")
    front = pareto_front(latency, accuracy)
    finite = latency[np.isfinite(latency)]
    log_x = bool(finite.size) and finite.min() > 0 and finite.max() / finite.min() > 10
    labels = []
    for i, row in enumerate(rows):
        bar = errors[:, [i]] if np.isfinite(errors[:, i]).all() else None
        edge = "black" if front[i] else "none"
        ax.errorbar(
            latency[i], accuracy[i], yerr=bar, fmt="o", ms=8, color=palette[row.label], mec=edge, capsize=3
        )
        point = (latency[i], accuracy[i])
        label = ax.annotate(row.label, point, xytext=(7, 5), textcoords="offset points")
        label.set_path_effects([patheffects.withStroke(linewidth=3, foreground="white")])  # legible over bars
        labels.append(label)
    order = np.argsort(latency[front])
    label = "Pareto front (outlined: no other row is both faster and more accurate)"
    ax.step(
        latency[front][order],
        accuracy[front][order],
        where="post",
        color="black",
        ls="--",
        lw=1.2,
        label=label,
    )
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 20, 50, 100 rather than 2x10^1 labels that collide
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(
        xlabel="latency (ms per image, batch 1)",
        ylabel="accuracy (mean over seeds)",
        title=title,
    )
    ax.margins(x=0.15, y=0.15)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    separate_labels(ax, labels)
    write_figure(fig, path, cfg.figures.dpi)


def macro_roc(labels: np.ndarray, probabilities: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean one-vs-rest TPR on a common FPR grid; for two classes, the positive class's curve
    (the same convention as evaluate.macro_auroc, so the legend's AUC matches the table)."""
    n_classes = probabilities.shape[1]
    curves = []
    for k in [1] if n_classes == 2 else range(n_classes):
        positive = labels == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
        curves.append(np.interp(grid, fpr, tpr))
    tpr = np.mean(curves, axis=0) if curves else np.full_like(grid, np.nan)
    tpr[0] = 0.0
    return tpr


def roc_overlay(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """Macro ROC per row, each seed's curve averaged vertically (so the curve is the seed mean, like the
    table), the row's macro-AUROC and interval in the legend."""
    grid = np.linspace(0, 1, cfg.figures.roc_points)
    palette = colours([row.label for row in rows])
    fig, ax = plt.subplots(figsize=(6.5, 6))
    d = cfg.digits
    for row in rows:
        found = row.estimates
        if found is None or found.test is None:
            log.warning("no ROC curve for %s: %s", row.label, found.problem if found else "no predictions")
            continue
        tpr = np.mean([macro_roc(found.test.labels, p, grid) for p in found.probabilities], axis=0)
        auc = estimate(row, "macro_auroc")
        band = f" [{auc.low:.{d}f}, {auc.high:.{d}f}]" if np.isfinite(auc.low) else ""
        ax.plot(
            grid, tpr, color=palette[row.label], lw=2, label=f"{row.label} (AUC {auc.estimate:.{d}f}{band})"
        )
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="chance")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate (macro average)",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"{dataset}: macro one-vs-rest ROC\n(mean over seeds; AUC with {settings.ci_level:.0%} CI)",
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    write_figure(fig, path, cfg.figures.dpi)


FIGURES: dict[str, tuple[Callable[[list[Row], str, DictConfig, Settings, Path], None], str]] = {
    "primary_metric": (bar_chart, "primary metric by backbone with confidence intervals"),
    "accuracy_vs_latency": (accuracy_vs_latency, "accuracy vs latency with the Pareto front"),
    "confusion_matrices": (panels.confusion_grid, "confusion matrices, mean over seeds"),
    "training_curves": (panels.curves_grid, "validation accuracy and loss per epoch"),
    "roc": (roc_overlay, "macro ROC curves"),
    "reliability": (panels.reliability_grid, "reliability diagrams"),
}


def file_prefix(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)


def draw_each(
    figures: list[tuple[Callable, Path]], rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings
) -> None:
    for draw, path in figures:
        draw(rows, dataset, cfg, settings, path)


def draw_figures(
    rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, folder: Path
) -> tuple[dict[str, tuple[Path, str]], Future]:
    """Every figure of one dataset, sent to `background.draw` at once (a sweep's worker draws them while
    this process goes on, the rows pickled once, 4 MB for a default sweep; else drawn now): name -> (path,
    caption) for the links in leaderboard.md, and the drawing, for `figures_written`."""
    settings_compared = {name: (draw, caption) for name, (applies, draw, caption) in SETTING_FIGURES.items()
                         if applies(rows)}
    figures = {
        name: (draw, folder / f"{file_prefix(dataset)}_{name}.png", f"{dataset}: {caption}")
        for name, (draw, caption) in (FIGURES | settings_compared).items()
    }
    each = [(draw, path) for draw, path, _ in figures.values()]
    drawn = background.draw(draw_each, each, rows, dataset, cfg, settings)
    return {name: (path, caption) for name, (_, path, caption) in figures.items()}, drawn


def figures_written(drawing: tuple[dict[str, tuple[Path, str]], Future]) -> dict[str, tuple[Path, str]]:
    """Wait for `draw_figures`' figures (a figure's error is raised here); name -> (path, caption)."""
    written, drawn = drawing
    drawn.result()
    for path, _ in written.values():
        log.info("wrote %s", path)
    return written
