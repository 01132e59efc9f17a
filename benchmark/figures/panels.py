"""The leaderboard's per-row panel grids: confusion matrices, training curves and reliability diagrams."""

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from omegaconf import DictConfig

from benchmark.figures.canvas import empty_panel, panel_grid, plt, write_figure
from benchmark.figures.run import confusion_heatmap
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.scores import expected_calibration_error
from benchmark.report.estimates import temperature
from benchmark.report.paired import pooled
from benchmark.report.rows import Row, mean_confusion
from benchmark.runs.layout import ENSEMBLE


def seeds(row: Row) -> str:
    return f"{len(row.runs)} seed{'s' if len(row.runs) != 1 else ''}"


def confusion_grid(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """One heatmap per row: counts averaged over seeds, shaded by share of the true class."""
    classes = rows[0].classes
    side = 1.4 + 0.85 * len(classes)
    fig, axes = panel_grid(len(rows), cfg.figures.panel_columns, side + 0.6, side)
    for ax, row in zip(axes, rows, strict=True):
        confusion_heatmap(ax, mean_confusion(row), row.classes, colorbar=False, fontsize=8)
        ax.set(title=f"{row.label} ({seeds(row)})")
        ax.tick_params(axis="x", rotation=45 if len(classes) > 3 else 0)
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(f"{dataset}: confusion matrices (counts = mean over seeds; shade = share of true class)")
    fig.tight_layout()
    write_figure(fig, path, cfg.figures.dpi)


def curves_grid(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """Validation accuracy and loss per epoch: one row of panels per backbone, one line per seed."""
    rows = [row for row in rows if row.backbone != ENSEMBLE] or rows  # an ensemble is not trained
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 2.6 * len(rows) + 0.6), squeeze=False)
    for (acc_ax, loss_ax), row in zip(axes, rows, strict=True):
        histories = [(run.metrics["seed"], run.history) for run in row.runs if run.history is not None]
        for ax, column in ((acc_ax, "val_accuracy"), (loss_ax, "val_loss")):
            if not histories:
                empty_panel(ax, f"{row.label}: {column}", "no readable history.csv")
                continue
            for seed, history in histories:
                ax.plot(history["epoch"], history[column], marker="o", ms=3, label=f"seed {seed}")
            name = column.removeprefix("val_")
            ax.set(title=f"{row.label}: validation {name}", xlabel="epoch", ylabel=name)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    fig.suptitle(f"{dataset}: training curves on the validation split")
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # keep the first row's titles clear of the suptitle
    write_figure(fig, path, cfg.figures.dpi)


def bin_accuracy(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, count) per equal-width confidence bin."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    return np.bincount(which, weights=correct, minlength=bins) / np.maximum(counts, 1), counts


def calibrated_pooled(row: Row) -> tuple[np.ndarray, np.ndarray] | None:
    """Every seed's test probabilities after its own validation-fitted temperature; None without one."""
    temperatures = [temperature(run) for run in row.runs]
    return None if any(t is None for t in temperatures) else pooled(row, temperatures)


def reliability_panel(ax: Axes, row: Row, settings: Settings) -> None:
    """Accuracy per confidence bin (the runs' own ECE bins) as trained, with each bin's prediction count
    on top, and after temperature scaling as a line."""
    bins = settings.ece_bins
    labels, probabilities = pooled(row)
    accuracy, counts = bin_accuracy(labels, probabilities, bins)
    left = np.arange(bins) / bins
    shown = counts > 0
    ax.bar(
        left[shown],
        accuracy[shown],
        width=1 / bins,
        align="edge",
        edgecolor="black",
        alpha=0.75,
        label="accuracy in bin, as trained",
    )
    for x, height, n in zip(left[shown], accuracy[shown], counts[shown], strict=True):
        ax.text(
            x + 0.5 / bins,
            height + 0.02,
            str(n),
            ha="center",
            va="bottom",
            fontsize=7,
            color="dimgrey",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", label="perfect calibration")
    ece = expected_calibration_error(labels, probabilities, bins)
    title = f"{row.label}\npooled ECE {ece:.3f}"
    after = calibrated_pooled(row)
    if after is not None:
        scaled_accuracy, scaled_counts = bin_accuracy(*after, bins)
        kept = scaled_counts > 0
        ax.plot(
            left[kept] + 0.5 / bins,
            scaled_accuracy[kept],
            "o-",
            color="tab:red",
            ms=4,
            label="after temperature scaling",
        )
        title += f" → {expected_calibration_error(*after, bins):.3f} after scaling"
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.1),
        xlabel="confidence (max probability)",
        ylabel="accuracy",
        title=title,
    )
    ax.legend(loc="upper left", fontsize="small")


def reliability_grid(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """Per confidence bin, how often the prediction was right; a calibrated model sits on the diagonal.

    The bins are the runs' own ECE bins, so the pooled ECE in each title is computed as the table's is.
    """
    bins = settings.ece_bins
    fig, axes = panel_grid(len(rows), cfg.figures.panel_columns, 3.8, 3.8)
    for ax, row in zip(axes, rows, strict=True):
        reliability_panel(ax, row, settings)
    fig.suptitle(
        f"{dataset}: reliability, {bins} confidence bins, all seeds' predictions pooled "
        "(numbers: predictions per bin; line: after temperature scaling fitted on validation)"
    )
    fig.tight_layout()
    write_figure(fig, path, cfg.figures.dpi)
