"""Shared figure plumbing: the atomic PNG writer, one colour per row, panel grids, label placement."""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox
from PIL import Image

from benchmark.files import atomic_path

__all__ = ["plt"]  # figure modules take pyplot from here, after the package chose the Agg backend
MAX_WIDTH_INCHES = 22  # wider figures shrink to illegible text when GitHub fits them to the page
CORRECT, WRONG = "#1b7a2e", "#c0262d"  # captions of right and wrong predictions
DPI = 120
ROOM_INCHES = 1.0  # blank canvas round the axes for a figure's labels, cropped off again
PAD_INCHES = 0.1  # blank left round a cropped figure's content (as matplotlib's bbox_inches="tight")


def write_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Render a figure once on a canvas with room round the axes, crop it to the drawn pixels, and write
    it to a hidden sibling renamed into place; close the figure. Matplotlib's tight bounding box lays the
    figure out again, and so does a tight layout (kept by the panel grids only, whose panels would
    otherwise collide): a run's three figures took 1.11-1.15 s that way, 0.71 s this way; a report's
    rebuild 15.0 -> 13.0 s. (A constrained layout, as the Grad-CAM panels', still lays itself out on the
    draw: 0.75 -> 0.69 s a panel.) A photograph's white edge counts as blank (white on white either
    way). Content that reaches the canvas's edge (labels longer than the room) is written the slower way,
    which never clips."""
    try:
        in_layout = [ax.get_in_layout() for ax in fig.axes]
        roomy = fig.get_layout_engine() is None  # a constrained layout keeps its content inside by itself
        if roomy:
            make_room(fig, ROOM_INCHES)
        fig.set_dpi(dpi)
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())
        box = content_box(pixels, np.round(np.multiply(to_rgba(fig.get_facecolor()), 255)))
        with atomic_path(path) as tmp:
            if box is None:
                if roomy:
                    for ax, kept in zip(fig.axes, in_layout, strict=True):
                        ax.set_in_layout(kept)  # moved by make_room, not by hand: layout and box see it
                    fig.tight_layout()
                fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
            else:
                pad = round(PAD_INCHES * dpi)
                (top, bottom), (left, right) = box
                cropped = pixels[max(top - pad, 0) : bottom + pad, max(left - pad, 0) : right + pad]
                Image.fromarray(cropped).save(tmp, format="png", dpi=(dpi, dpi))
    finally:
        plt.close(fig)
    return path


def make_room(fig: Figure, inches: float) -> None:
    """Grow the figure by `inches` on every side; its axes and texts keep their size and places. (Axes
    placed this way leave any layout engine's care: only for figures without one.)"""
    width, height = fig.get_size_inches()
    wide, high = width + 2 * inches, height + 2 * inches
    for ax in fig.axes:
        x, y, w, h = ax.get_position(original=True).bounds
        ax.set_position(((x * width + inches) / wide, (y * height + inches) / high, w * width / wide,
                         h * height / high))
    for text in fig.texts:  # the suptitle
        x, y = text.get_position()
        text.set_position(((x * width + inches) / wide, (y * height + inches) / high))
    fig.set_size_inches(wide, high)


def content_box(pixels: np.ndarray, background: np.ndarray) -> tuple[tuple[int, int], ...] | None:
    """Rows and columns (start, stop) of what differs from the background; None when it reaches an edge
    of the canvas (then something may have been cut) or nothing was drawn."""
    drawn = np.any(pixels != background.astype(pixels.dtype), axis=-1)
    rows, columns = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    height, width = drawn.shape
    if not len(rows) or rows[0] == 0 or columns[0] == 0 or rows[-1] == height - 1 or columns[-1] == width - 1:
        return None
    return (int(rows[0]), int(rows[-1]) + 1), (int(columns[0]), int(columns[-1]) + 1)


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


def separate_labels(ax: Axes, labels: list[Annotation], step: float = 11.0) -> None:
    """Move each point label down `step` points at a time until its box clears the labels placed before
    it, measured as they will be drawn (comparing only the points' distances left neighbouring labels,
    densenet121 and resnet50, printed over each other). Call it once the axes' scale and margins are set."""
    ax.autoscale_view()
    renderer = ax.figure.canvas.get_renderer()
    placed: list[Bbox] = []
    for label in labels:
        box = label.get_window_extent(renderer)
        while any(box.overlaps(other) for other in placed):
            x, y = label.xyann
            label.xyann = (x, y - step)
            box = label.get_window_extent(renderer)
        placed.append(box)
