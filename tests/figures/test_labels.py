"""Point labels of the accuracy-vs-latency figure: neighbours are moved apart as drawn, not printed over
each other; a label with room keeps its place."""

from benchmark.figures.canvas import plt, separate_labels


def test_labels_of_neighbouring_points_are_moved_until_their_boxes_clear():
    fig, ax = plt.subplots(figsize=(8, 5.5))
    points = {
        "mobilenetv2": (40, 0.32), "densenet121": (60, 0.41), "resnet50": (80, 0.41), "vgg19": (500, 0.58)
    }
    ax.plot(*zip(*points.values(), strict=True), "o")
    ax.set_xscale("log")
    labels = [ax.annotate(name, point, xytext=(7, 5), textcoords="offset points")
              for name, point in points.items()]
    ax.autoscale_view()  # the limits the figure is drawn with
    renderer = fig.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in labels]
    assert boxes[1].overlaps(boxes[2])  # as placed: the two labels collide
    separate_labels(ax, labels)
    boxes = [label.get_window_extent(renderer) for label in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    # resnet50's label one line down, no more; the others where they were
    assert [label.xyann for label in labels] == [(7, 5), (7, 5), (7, 5 - 11.0), (7, 5)]
    plt.close(fig)
