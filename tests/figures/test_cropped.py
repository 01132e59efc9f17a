"""Figures are drawn once and cropped to what was drawn; labels too long for the room round the
axes fall back to matplotlib's tight bounding box, so nothing is ever cut off."""

import numpy as np
from PIL import Image

from benchmark.figures.canvas import DPI, PAD_INCHES, ROOM_INCHES, plt, write_figure

PAD = round(PAD_INCHES * DPI)


def labelled_figure(ylabel: str):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [0.2, 0.5, 0.4], marker="o")
    ax.set(xlabel="epoch", ylabel=ylabel, title="a run")
    return fig


def blank_border(pixels: np.ndarray) -> bool:
    edges = [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]
    return all((edge[..., :3] == 255).all() for edge in edges)


def test_a_figure_is_drawn_once_and_cropped_to_its_content_plus_the_pad(tmp_path):
    fig = labelled_figure("accuracy")
    draws = []
    fig.canvas.mpl_connect("draw_event", draws.append)
    write_figure(fig, tmp_path / "once.png")
    assert len(draws) == 1  # a tight layout and a tight bounding box each drew it again
    pixels = np.asarray(Image.open(tmp_path / "once.png").convert("RGBA"))
    assert blank_border(pixels)
    drawn = (pixels[..., :3] != 255).any(axis=-1)
    rows, columns = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    # the room round the axes is cropped off again: exactly the pad is left on each side
    assert (rows[0], columns[0]) == (PAD, PAD)
    assert (len(drawn) - 1 - rows[-1], drawn.shape[1] - 1 - columns[-1]) == (PAD, PAD)
    assert pixels.shape[1] < (4 + 2 * ROOM_INCHES) * DPI - 2 * PAD


def test_labels_longer_than_the_room_are_written_whole_the_slower_way(tmp_path):
    write_figure(labelled_figure("short"), tmp_path / "short.png")
    long_label = "accuracy on the cases the model keeps"  # ~2.8 inches: beyond the room left of the axes
    fig = labelled_figure("x")
    fig.axes[0].set_yticks([0.2, 0.5], [long_label, "b"])
    write_figure(fig, tmp_path / "long.png")
    short, long = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("RGBA")) for n in ("short", "long"))
    assert blank_border(long)  # not cut at the canvas's edge
    assert long.shape[1] > short.shape[1] + DPI  # the whole label is in the picture


def test_a_constrained_layout_still_lays_out_its_axes(tmp_path):
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    for ax in axes:
        ax.imshow(np.linspace(0, 1, 64).reshape(8, 8))
        ax.set_title("true: pneumonia | pred: tumor (p=0.61)")
    write_figure(fig, tmp_path / "constrained.png")
    assert all(ax.get_in_layout() for ax in fig.axes)  # axes moved by hand leave the layout's care
    assert blank_border(np.asarray(Image.open(tmp_path / "constrained.png").convert("RGBA")))
