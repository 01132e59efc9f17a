"""Grad-CAM overlays of a run's test images, with the randomisation check printed on the figure.

Each panel shows why the model predicted what it did (the map of the predicted class), for about as
many wrong predictions as correct ones.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from backbones.registry import get
from benchmark.errors import BenchmarkError
from benchmark.figures.gradcam import Overlay, caption, overlay_figure
from benchmark.saliency.gradcam import (
    gradcam,
    gradient_function,
    has_spatial_information,
    mean_spearman,
    randomization_check,
    weighted_maps,
)
from benchmark.saliency.pool import head_weights

log = logging.getLogger(__name__)
METHODS = {  # how the maps were computed (metrics.json's gradcam_method): the same maps either way
    "gradient": "gradient of the class score through the model",
    "pooled": "head gradient on the frozen backbone's pooled activations (saliency/pool.py)",
}


def choose_images(y_true: np.ndarray, y_pred: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n test images, about half correct and half wrong when both exist (correct ones first).

    A short supply of one kind is made up with the other; the draw is deterministic by `seed`.
    """
    correct = np.flatnonzero(np.asarray(y_true) == np.asarray(y_pred))
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    n = min(n, len(correct) + len(wrong))
    n_correct = min(len(correct), n - min(len(wrong), n // 2))
    rng = np.random.default_rng(seed)
    picks = [
        np.sort(rng.choice(group, k, replace=False))
        for group, k in ((correct, n_correct), (wrong, n - n_correct))
    ]
    return np.concatenate(picks).astype(np.int64)


def check_count(n_images: object) -> None:
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 0:
        raise BenchmarkError(f"n_images={n_images!r} is not a count: use an integer >= 0 (0 = no Grad-CAM)")


def explain(
    model: keras.Model,
    pixels: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    backbone: str,
    n_images: int,
    seed: int,
    out_path: Path,
    overlay: Overlay | None = None,
) -> dict:
    """Write the Grad-CAM overlays of n test images to `out_path`; the keys for metrics.json.

    `pixels` are the raw (n, s, s, 3) test images in predictions order; n_images == 0 writes nothing.
    """
    check_count(n_images)
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities)
    y_pred = probabilities.argmax(axis=1)
    rows = choose_images(y_true, y_pred, n_images, seed)
    if len(rows) == 0:
        return {}
    layer = get(backbone).last_conv_layer
    images = np.asarray(pixels[rows], np.float32)
    started = time.perf_counter()
    gradients = gradient_function(model, layer)
    maps = gradcam(model, images, y_pred[rows], layer, gradients)
    spearman = randomization_check(model, images, y_pred[rows], layer, seed, maps, gradients)
    figure = Panels(images, maps, rows, y_true, probabilities, class_names, backbone, layer)
    return draw(figure, spearman, "these images", out_path, overlay, started, "gradient")


def explain_pooled(
    pool: dict[str, np.ndarray],
    head: keras.Model,
    pixels: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    backbone: str,
    n_images: int,
    seed: int,
    out_path: Path,
    overlay: Overlay | None = None,
) -> dict:
    """`explain` for a frozen run from its backbone's pooled activations (saliency/pool.py) and its head:
    the panels chosen among the pooled test images, the randomisation test on the pool's check images."""
    check_count(n_images)
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities)
    y_pred = probabilities.argmax(axis=1)
    in_pool = choose_images(y_true[pool["rows"]], y_pred[pool["rows"]], n_images, seed)
    if len(in_pool) == 0:
        return {}
    started, size = time.perf_counter(), pixels.shape[1:3]
    rows = pool["rows"][in_pool]
    weights = head_weights(head, pool["features"][in_pool], y_pred[rows])
    maps = weighted_maps(pool["activations"][in_pool], weights, size)
    checked = pool["rows"][: len(pool["redrawn_features"])]
    first = slice(0, len(checked))
    trained_weights = head_weights(head, pool["features"][first], y_pred[checked])
    trained = weighted_maps(pool["activations"][first], trained_weights, size)
    redrawn_weights = head_weights(head, pool["redrawn_features"], y_pred[checked])
    redrawn = weighted_maps(pool["redrawn_activations"], redrawn_weights, size)
    spearman = mean_spearman(trained, redrawn) if has_spatial_information(trained) else None
    images = np.asarray(pixels[rows], np.float32)
    layer = get(backbone).last_conv_layer
    figure = Panels(images, maps, rows, y_true, probabilities, class_names, backbone, layer)
    return draw(figure, spearman, f"{len(checked)} fixed test images", out_path, overlay, started, "pooled")


@dataclass(frozen=True)
class Panels:
    """What the figure shows: the chosen test rows, their images and maps."""

    images: np.ndarray
    maps: np.ndarray
    rows: np.ndarray
    y_true: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    backbone: str
    layer: str


def draw(
    panels: Panels, spearman: float | None, checked: str, out_path: Path, overlay: Overlay | None,
    started: float, method: str,
) -> dict:
    """The figure with the randomisation test in its title; the keys for metrics.json."""
    y_pred = panels.probabilities.argmax(axis=1)
    rows, names = panels.rows, panels.class_names
    captions = [
        caption(names[panels.y_true[i]], names[y_pred[i]], panels.probabilities[i, y_pred[i]]) for i in rows
    ]
    check = (
        f"randomisation test on {checked}: Spearman \u03c1 = {spearman:.2f} between the maps of this model "
        "and of one with re-drawn backbone weights (low = maps depend on the learned weights)"
        if spearman is not None
        else "randomisation test: not applicable — the maps carry no spatial information "
        f"(layer {panels.layer!r} is too small at this input size)"
    )
    suptitle = f"Grad-CAM: {panels.backbone}, layer {panels.layer!r}\n{check}"
    correct = panels.y_true[rows] == y_pred[rows]
    overlay_figure(panels.images, panels.maps, captions, correct, suptitle, out_path, overlay or Overlay())
    log.info(
        "grad-cam (%s): %d images, randomisation check %s, %.1fs -> %s",
        method,
        len(rows),
        "not applicable" if spearman is None else f"Spearman {spearman:.3f}",
        time.perf_counter() - started,
        out_path,
    )
    return {
        "gradcam_images": len(rows),
        "gradcam_randomization_spearman": spearman,
        "gradcam_randomization": "not applicable (maps without spatial information)"
        if spearman is None
        else "computed",
        "gradcam_method": METHODS[method],
    }
