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
from benchmark.saliency.gradcam import gradcam, gradient_function, randomization_check

log = logging.getLogger(__name__)


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
    """Write the Grad-CAM overlays of n test images to `out_path`; the two keys for metrics.json.

    `pixels` are the raw (n, s, s, 3) test images in predictions order; n_images == 0 writes nothing.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 0:
        raise BenchmarkError(f"n_images={n_images!r} is not a count: use an integer >= 0 (0 = no Grad-CAM)")
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
    captions = [
        caption(class_names[y_true[i]], class_names[y_pred[i]], probabilities[i, y_pred[i]]) for i in rows
    ]
    check = (
        f"randomisation test: Spearman \u03c1 = {spearman:.2f} between the maps of this model and of one "
        "with re-drawn backbone weights (low = maps depend on the learned weights)"
        if spearman is not None
        else "randomisation test: not applicable — the maps carry no spatial information "
        f"(layer {layer!r} is too small at this input size)"
    )
    suptitle = f"Grad-CAM: {backbone}, layer {layer!r}\n{check}"
    correct = y_true[rows] == y_pred[rows]
    overlay_figure(images, maps, captions, correct, suptitle, out_path, overlay or Overlay())
    log.info(
        "grad-cam: %d images, randomisation check %s, %.1fs -> %s",
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
    }
