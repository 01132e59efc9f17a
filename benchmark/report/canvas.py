"""Shared figure plumbing: the headless backend, panel grids, one colour per row, atomic PNG writes."""

import math
from pathlib import Path

import matplotlib

from benchmark.files import write_figure

matplotlib.use("Agg")  # files only: reports are built on headless machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmark.report.stats import Row  # noqa: E402

MAX_WIDTH_INCHES = 22  # wider figures shrink to illegible text when GitHub fits them to the page


def colours(rows: list[Row]) -> dict[str, tuple]:
    """The same row keeps the same colour in every figure of a dataset."""
    palette = sns.color_palette("colorblind", max(len(rows), 1))
    return {row.label: palette[i % len(palette)] for i, row in enumerate(rows)}


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


def save(fig: Figure, path: Path, dpi: int) -> Path:
    return write_figure(fig, path, dpi)


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
