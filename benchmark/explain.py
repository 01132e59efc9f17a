"""Grad-CAM overlays of a run's test images, with the randomisation check printed on the figure.

`python -m benchmark.explain run=<run dir> [n_images=8] [seed=0]` explains a finished run again;
the run pipeline calls `explain` itself. Each panel shows why the model predicted what it did (the map
of the predicted class), for about as many wrong predictions as correct ones.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the log

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import matplotlib
import numpy as np
from omegaconf import DictConfig, OmegaConf

matplotlib.use("Agg")  # files only: runs happen on headless machines

import matplotlib.pyplot as plt

from backbones.registry import get
from benchmark import cli
from benchmark.errors import BenchmarkError
from benchmark.evaluate import read_predictions_csv
from benchmark.files import write_figure, write_json
from benchmark.gradcam import gradcam, randomization_check

__all__ = ["Overlay", "choose_images", "explain", "gradcam", "main", "randomization_check"]
log = logging.getLogger(__name__)
CORRECT, WRONG = "#1b7a2e", "#c0262d"
CAPTION_CHARS = 40  # what fits on one line above a panel at the figure's font size


@dataclass(frozen=True)
class Overlay:
    """How the maps are drawn (the `figure` node of conf/explain.yaml)."""

    alpha: float = 0.4
    colormap: str = "jet"
    columns: int = 4
    dpi: int = 120


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


def caption(true: str, predicted: str, probability: float) -> str:
    """One line while it fits above a panel, else broken after the true class."""
    text = f"true: {true} | pred: {predicted} (p={probability:.2f})"
    return text if len(text) <= CAPTION_CHARS else text.replace(" | ", "\n", 1)


def overlay_figure(
    images: np.ndarray,
    maps: np.ndarray,
    captions: list[str],
    correct: np.ndarray,
    suptitle: str,
    path: Path,
    overlay: Overlay,
) -> None:
    """One panel per image: the image, its map on top, the caption green if correct and red if wrong."""
    columns = max(1, min(overlay.columns, len(images)))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.4 * columns + 0.9, 3.5 * rows + 0.9), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(images) :]:
        ax.set_axis_off()
    for ax, image, heat, text, ok in zip(axes.flat, images, maps, captions, correct, strict=False):
        ax.imshow(np.asarray(image, np.uint8), interpolation="nearest")
        ax.imshow(heat, cmap=overlay.colormap, alpha=overlay.alpha, vmin=0.0, vmax=1.0)
        ax.set_title(text, color=CORRECT if ok else WRONG, fontsize=9, fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
    colours = plt.cm.ScalarMappable(plt.Normalize(0.0, 1.0), overlay.colormap)
    fig.colorbar(colours, ax=axes, shrink=0.8, label="Grad-CAM of the predicted class (1 = peak)")
    fig.suptitle(suptitle, fontsize=11)
    write_figure(fig, path, overlay.dpi)


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
    maps = gradcam(model, images, y_pred[rows], layer)
    spearman = randomization_check(model, images, y_pred[rows], layer, seed)
    captions = [
        caption(class_names[y_true[i]], class_names[y_pred[i]], probabilities[i, y_pred[i]]) for i in rows
    ]
    suptitle = (
        f"Grad-CAM: {backbone}, layer {layer!r}\n"
        f"randomisation test: Spearman \u03c1 = {spearman:.2f} between the maps of this model and of one "
        "with re-drawn backbone weights (low = maps depend on the learned weights)"
    )
    correct = y_true[rows] == y_pred[rows]
    overlay_figure(images, maps, captions, correct, suptitle, out_path, overlay or Overlay())
    log.info(
        "grad-cam: %d images, randomisation Spearman %.3f, %.1fs -> %s",
        len(rows),
        spearman,
        time.perf_counter() - started,
        out_path,
    )
    return {"gradcam_images": len(rows), "gradcam_randomization_spearman": spearman}


def load_test_split(
    run_dir: Path, run_cfg: DictConfig, metrics: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's test pixels, true labels and probabilities, checked to be in predictions.csv's order."""
    from benchmark.data import load_dataset
    from benchmark.features import split_pixels

    classes = list(metrics["classes"])
    predictions = read_predictions_csv(run_dir / "predictions.csv")
    dataset = load_dataset(run_cfg.dataset, Path(run_cfg.data_dir))
    if predictions["file"].astype(str).tolist() != list(dataset.splits["test"].ids):
        raise BenchmarkError(
            f"predictions.csv of {run_dir} does not list the test split of {dataset.name!r} in order: "
            "the data changed since the run; re-run it with force=true"
        )
    pixels = split_pixels(dataset, "test", int(metrics["image_size"]), Path(run_cfg.cache_dir))
    y_true = predictions["true_label"].map(classes.index).to_numpy()
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy(np.float32)
    return pixels, y_true, probabilities


def explain_run(cfg: DictConfig) -> dict:
    """Explain a finished run: <run>/gradcam.png, and the two keys added to its metrics.json."""
    run_dir = cli.require_model_run(str(cfg.run))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    pixels, y_true, probabilities = load_test_split(run_dir, OmegaConf.load(run_dir / "config.yaml"), metrics)
    import backbones  # noqa: F401  registers the Preprocess layer the saved model contains

    model = keras.models.load_model(run_dir / "model.keras")
    scores = explain(
        model,
        pixels,
        y_true,
        probabilities,
        list(metrics["classes"]),
        metrics["backbone"],
        cfg.n_images,
        cfg.seed,
        run_dir / "gradcam.png",
        Overlay(**cfg.figure),
    )
    if scores:
        write_json(run_dir / "metrics.json", {**json.loads((run_dir / "metrics.json").read_text()), **scores})
    return scores


def main(argv: list[str] | None = None) -> dict:
    return cli.main("explain", explain_run, argv)


if __name__ == "__main__":
    main()
