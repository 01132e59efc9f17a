"""The confusion heatmap of a run and of the leaderboard's grid: what each cell reads, and a grid that is
drawn once when saved, not once per panel as it is built."""

import numpy as np

from benchmark.figures.canvas import panel_grid, plt
from benchmark.figures.run import confusion_heatmap


def test_each_cell_reads_its_count_and_row_share_in_a_colour_readable_on_its_shade():
    fig, ax = plt.subplots()
    confusion_heatmap(ax, np.array([[9, 1], [2, 2]]), ["normal", "tumor"], colorbar=True)
    cells = sorted((text.get_text(), text.get_color()) for text in ax.texts)
    assert cells == [("1\n10%", "0.15"), ("2\n50%", "white"), ("2\n50%", "white"), ("9\n90%", "white")]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["normal", "tumor"]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["normal", "tumor"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert fig.axes[1].get_ylabel() == "share of true class"  # the colorbar
    plt.close(fig)


def test_a_grid_of_heatmaps_is_not_drawn_while_it_is_built():
    fig, axes = panel_grid(8, 4, 3.0, 3.0)
    draws = []
    fig.canvas.mpl_connect("draw_event", draws.append)
    for ax in axes:
        confusion_heatmap(ax, np.array([[3, 1], [0, 4]]), ["a", "b"], colorbar=False, fontsize=8)
    assert draws == []  # seaborn's heatmap drew the whole figure on each call: eight draws here
    fig.canvas.draw()
    assert len(draws) == 1  # the counter does see a draw
    plt.close(fig)


def test_long_class_names_are_slanted_under_the_matrix_and_short_ones_stay_upright():
    fig, (upright, slanted) = plt.subplots(1, 2)
    counts = np.array([[3, 1], [0, 4]])
    confusion_heatmap(upright, counts, ["normal", "pneumonia"], colorbar=False)
    confusion_heatmap(slanted, counts, ["normal", "COVID-19 viral pneumonia"], colorbar=False)
    assert {label.get_rotation() for label in upright.get_xticklabels()} == {0}
    assert {label.get_rotation() for label in slanted.get_xticklabels()} == {30}
    assert {label.get_rotation() for label in slanted.get_yticklabels()} == {0}
    plt.close(fig)
