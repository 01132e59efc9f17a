"""Shared figure plumbing: the atomic PNG writer, one colour per row, panel grids, label placement."""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmark.files import atomic_path

__all__ = ["plt"]  # figure modules take pyplot from here, after the package chose the Agg backend
MAX_WIDTH_INCHES = 22  # wider figures shrink to illegible text when GitHub fits them to the page
CORRECT, WRONG = "#1b7a2e", "#c0262d"  # captions of right and wrong predictions
DPI = 120


def write_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Render a figure to a hidden sibling, rename it into place, and close the figure."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def colours(labels: list[str]) -> dict[str, tuple]:
    """The same row keeps the same colour in every figure of a dataset (colour-blind safe palette)."""
    palette = sns.color_palette("colorblind", max(len(labels), 1))
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def panel_grid(n: int, columns: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """`n` panels in rows of at most `columns` (fewer when panels are wide, e.g. many classes);
    spare panels are hidden, not left empty."""
    ncols = max(1, min(n, columns, int(MAX_WIDTH_INCHES // width)))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(np.ravel(axes))
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def empty_panel(ax: Axes, title: str, message: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def stacked_offsets(x: np.ndarray, y: np.ndarray, near: float = 0.04, step: float = 11.0) -> list[float]:
    """Vertical label offsets (points): labels of points closer than `near` (share of the axis span)
    are stacked one text line apart instead of printed over each other."""

    def scaled(values: np.ndarray) -> np.ndarray:
        span = np.nanmax(values) - np.nanmin(values) if np.isfinite(values).any() else 0.0
        return (values - np.nanmin(values)) / span if span > 0 else np.zeros_like(values)

    points = np.column_stack([scaled(np.asarray(x, float)), scaled(np.asarray(y, float))])
    offsets: list[float] = []
    for i, point in enumerate(points):
        close = sum(1 for j in range(i) if np.all(np.abs(points[j] - point) < near))
        offsets.append(5.0 - step * close)
    return offsets
