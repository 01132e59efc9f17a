"""A single run's figures: confusion matrix, training curves and the coverage curve."""

from pathlib import Path

import numpy as np
import pandas as pd
from seaborn.utils import relative_luminance

from benchmark.figures.canvas import plt, write_figure

DARK_LUMINANCE = 0.408  # cells at or below it get white text (seaborn's threshold, W3C luminance)
SLANTED_NAMES = 10  # class names longer than this (characters) are slanted under the matrix: upright,
                    # "COVID-19 viral pneumonia" ran into "bacterial pneumonia" beside it


def confusion_matrix_figure(
    confusion: list[list[int]], class_names: list[str], title: str, path: Path
) -> None:
    """Counts, with each cell shaded by its share of the true class (row-normalised)."""
    size = 1.2 + 1.1 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    confusion_heatmap(ax, np.asarray(confusion), class_names, colorbar=True)
    ax.set(title=title)
    write_figure(fig, path)


def confusion_heatmap(
    ax, counts: np.ndarray, class_names: list[str], colorbar: bool, fontsize: int = 10
) -> None:
    """Cells read count and row share; the shade is the share, so rare classes stay readable.

    Matplotlib's annotated heatmap rather than seaborn's `heatmap`, which draws the whole figure on every
    call (to see whether tick labels overlap): the leaderboard's grid of eight drew eight figures, 4.7 s.
    """
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)
    shading = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), share in np.ndenumerate(shares):
        dark = relative_luminance(shading.cmap(shading.norm(share))) <= DARK_LUMINANCE
        ax.text(column, row, f"{counts[row, column]:.3g}\n{share:.0%}", ha="center", va="center",
                fontsize=fontsize, color="white" if dark else "0.15")
    ticks = np.arange(len(class_names))
    slanted = max(map(len, class_names), default=0) > SLANTED_NAMES
    ax.set_xticks(ticks, class_names, rotation=30 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="predicted", ylabel="true")
    ax.spines[:].set_visible(False)
    if colorbar:
        bar = ax.figure.colorbar(shading, ax=ax, label="share of true class", fraction=0.046, pad=0.04)
        bar.outline.set_visible(False)  # as tall as the square matrix (the usual fraction for it)


def curves_figure(history: pd.DataFrame, title: str, path: Path, best_epoch: int | None = None) -> None:
    """Train/val accuracy and loss per epoch, with the restored (best) epoch marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(history["epoch"], history[metric], marker="o", ms=3, label=f"train {metric}")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", ms=3, label=f"val {metric}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label="restored epoch")
        if "phase" in history and history["phase"].nunique() > 1:
            boundary = history.loc[history["phase"] != history["phase"].iloc[0], "epoch"].iloc[0] - 0.5
            ax.axvline(boundary, color="black", ls=":", lw=1, label="backbone unfrozen")
        ax.set(xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    write_figure(fig, path)


def coverage_figure(curve: list[list[float]], title: str, path: Path) -> None:
    """Accuracy on the cases the model keeps when it refers its most uncertain ones to a reader."""
    coverage, accuracy = np.asarray(curve).T
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(coverage * 100, accuracy, marker="o", label="kept cases")
    ax.axhline(accuracy[-1], color="grey", ls="--", lw=1, label=f"all cases ({accuracy[-1]:.2f})")
    ax.set(xlabel="coverage: % of test cases decided by the model", ylabel="accuracy on those cases",
           title=f"{title}\nrefer the most uncertain (entropy) to a radiologist", xlim=(5, 105))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    write_figure(fig, path)
