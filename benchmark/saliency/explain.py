"""Grad-CAM overlays of a run's test images, with the randomisation check printed on the figure.

Each panel shows why the model predicted what it did (the map of the predicted class), for about as
many wrong predictions as correct ones.
"""

import logging
import time
from pathlib import Path

import keras
import numpy as np

from backbones.registry import get
from benchmark.errors import BenchmarkError
from benchmark.figures.gradcam import Overlay, caption, overlay_figure
from benchmark.saliency.gradcam import (
    BLANK_WHEN_REDRAWN,
    gradcam,
    gradient_function,
    mean_spearman,
    not_compared,
    randomization_check,
    weighted_maps,
)
from benchmark.saliency.pool import Pooled, head_weights

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


def explain(
    explained: keras.Model | Pooled,
    pixels: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    backbone: str,
    n_images: int,
    seed: int,
    out_path: Path,
    overlay: Overlay | None = None,
    shown_as: Path | None = None,
) -> dict:
    """Write the Grad-CAM overlays of n test images to `out_path`; the keys for metrics.json. The log names
    `shown_as` where given: where the figure will be once its run, staged meanwhile, is published.

    `explained`: the model (gradient path), or a frozen run's kept activations and head (saliency/pool.py:
    the panels are chosen among the kept test images). `pixels` are the raw (n, s, s, 3) test images in
    predictions order; n_images == 0 writes nothing.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 0:
        raise BenchmarkError(f"n_images={n_images!r} is not a count: use an integer >= 0 (0 = no Grad-CAM)")
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities)
    y_pred = probabilities.argmax(axis=1)
    layer, started = get(backbone).last_conv_layer, time.perf_counter()
    pooled = isinstance(explained, Pooled)  # the panels then come from the kept test images
    kept = explained.arrays["rows"] if pooled else np.arange(len(y_true))
    in_kept = choose_images(y_true[kept], y_pred[kept], n_images, seed)
    rows = kept[in_kept]
    if len(rows) == 0:
        return {}
    if pooled:
        maps, spearman, checked, why_not = pooled_maps(explained, in_kept, y_pred, pixels.shape[1:3])
    else:
        maps, spearman = gradient_maps(explained, pixels[rows], y_pred[rows], layer, seed)
        checked, why_not = "these images", not_compared(maps)  # the test's images are the panels' here
    captions = [
        caption(class_names[y_true[i]], class_names[y_pred[i]], probabilities[i, y_pred[i]]) for i in rows
    ]
    if spearman is not None:
        check = (f"randomisation test on {checked}: Spearman \u03c1 = {spearman:.2f} between the maps of "
                 "this model and of one with re-drawn backbone weights (low = maps depend on the backbone's "
                 "weights)")
    elif why_not == BLANK_WHEN_REDRAWN:
        check = ("randomisation test: not applicable — the model with re-drawn backbone weights gives blank "
                 "maps")
    else:
        check = ("randomisation test: not applicable — the maps carry no spatial information "
                 f"(layer {layer!r} is too small at this input size)")
    suptitle = f"Grad-CAM: {backbone}, layer {layer!r}\n{check}"
    correct = y_true[rows] == y_pred[rows]
    images = np.asarray(pixels[rows], np.float32)
    overlay_figure(images, maps, captions, correct, suptitle, out_path, overlay or Overlay())
    log.info(
        "grad-cam (%s): %d images, randomisation check %s, %.1fs -> %s",
        "pooled" if pooled else "gradient",
        len(rows),
        "not applicable" if spearman is None else f"Spearman {spearman:.3f}",
        time.perf_counter() - started,
        shown_as or out_path,
    )
    return {
        "gradcam_images": len(rows),
        "gradcam_randomization_spearman": spearman,
        "gradcam_randomization": why_not if spearman is None else "computed",
        "gradcam_method": METHODS["pooled" if pooled else "gradient"],
    }


def gradient_maps(
    model: keras.Model, images: np.ndarray, classes: np.ndarray, layer: str, seed: int
) -> tuple[np.ndarray, float | None]:
    """The maps, and the randomisation test's correlation on the same images, through the model's
    gradient (one traced graph for both)."""
    images = np.asarray(images, np.float32)
    gradients = gradient_function(model, layer)
    maps = gradcam(model, images, classes, layer, gradients)
    return maps, randomization_check(model, images, classes, layer, seed, maps, gradients)


def pooled_maps(
    pooled: Pooled, in_pool: np.ndarray, y_pred: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, float | None, str, str]:
    """The maps of the kept images `in_pool`, and the randomisation test's correlation on the kept check
    images; what that test was measured on; why there is no correlation (when there is none)."""
    kept = pooled.arrays

    def maps_of(activations: np.ndarray, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return weighted_maps(activations, head_weights(pooled.head, features, y_pred[rows]), size)

    maps = maps_of(kept["activations"][in_pool], kept["features"][in_pool], kept["rows"][in_pool])
    checked = kept["rows"][: len(kept["redrawn_features"])]
    trained = maps_of(kept["activations"][: len(checked)], kept["features"][: len(checked)], checked)
    redrawn = maps_of(kept["redrawn_activations"], kept["redrawn_features"], checked)
    return maps, mean_spearman(trained, redrawn), f"{len(checked)} fixed test images", not_compared(trained)
