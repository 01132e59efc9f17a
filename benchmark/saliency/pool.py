"""Grad-CAM of a frozen run without rebuilding its backbone.

After a sweep, Grad-CAM of each row's best seed reloaded the saved extractor and traced its gradient graph:
38 s of a 251-s default sweep, about 70 % of it Keras rebuilding and tracing the seven networks. Every seed
of a frozen backbone shares that network; only the head differs. And where the Grad-CAM layer is followed
by nothing but pooling (every registry backbone: its last layer, or VGG19's block5_conv4 and block5_pool),
the spatial mean of d y^c / d A — all that Grad-CAM uses of the gradient — is (d y^c / d f) / (h w), f the
pooled features: pooling routes each window's gradient to its inputs without changing its sum. So the
maps need only the layer's activations A, kept here for a pool of test images while the extractor is in
memory anyway (the run that extracts the features; its inference graph returns A beside the features, so
no second graph is traced), and the head's gradient at f. A test checks the maps and the randomisation
test against the gradient path (`gradcam.py`).

The pool: PANEL_CHOICE x n_images test images drawn by `seed`, classes in turn, so the panels can still be
about half right and half wrong for whichever seed is shown; the randomisation test runs on the first
n_images of them, the same images for every seed and backbone.
"""

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from backbones.extractor import Forward, batch_free_graph, nested_base
from benchmark.files import atomic_path, digest, mark_used
from benchmark.saliency.gradcam import class_logits, final_dense, redrawn_backbone

PANEL_CHOICE = 4  # pooled test images per panel to choose from
CHUNK = 32  # images per call when pooling: bounds the activations held at once
POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D)


@dataclass(frozen=True)
class Pooled:
    """A frozen run's Grad-CAM from kept activations: the backbone's pool (`read_pool`) and the run's head."""

    arrays: dict[str, np.ndarray]
    head: keras.Model


def pooling_only_after(model: keras.Model, layer_name: str) -> bool:
    """True when, inside the model's backbone, only pooling layers follow `layer_name` (the condition
    under which the head's gradient gives Grad-CAM's channel weights)."""
    base = nested_base(model, layer_name)
    at = base.layers.index(base.get_layer(layer_name))
    outer = model.layers[model.layers.index(base) + 1 :]
    return all(isinstance(layer, POOLING) for layer in [*base.layers[at + 1 :], *outer])


def pooled_images(explain_cfg: DictConfig) -> int:
    """How many Grad-CAM panels a frozen run's pool serves (`explain` config group): a sweep cell's, drawn
    after the sweep (`after_sweep_images`; the cell's own `n_images` is then 0), else the run's own."""
    return int(explain_cfg.get("after_sweep_images") or explain_cfg.n_images)


def candidate_rows(labels: np.ndarray, n_images: int, seed: int) -> np.ndarray:
    """PANEL_CHOICE * n_images test rows (all, if fewer): each class's rows shuffled by `seed`, taken
    one class after another, so every class is in the pool."""
    rng = np.random.default_rng([seed, len(labels)])
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    in_turn = [int(queue[i]) for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    return np.asarray(in_turn[: PANEL_CHOICE * n_images], np.int64)


def pool_path(
    cache_dir: Path, extractor_file: Path, data_fingerprint: str, test_ids: list[str], layer: str,
    n_images: int, seed: int,
) -> Path:
    """Keyed by the extractor's file name (backbone, input size, weights, the data its BatchNorm saw), the
    data's content and test split, and what was pooled."""
    key = digest(data_fingerprint, list(test_ids), layer, n_images, seed, PANEL_CHOICE)
    return Path(cache_dir) / "gradcam" / f"{Path(extractor_file).stem}-{key}.npz"


def activations(extractor: keras.Model, layer_name: str, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the layer's activations, the pooled features) of `pixels`, CHUNK images per call, through the
    extractor's own inference graph: the one that extracted the features when the frozen run asked for
    this side output first (train/frozen.py), else a new one."""
    graph = batch_free_graph(extractor, side_output=layer_name)
    pieces = [graph(tf.constant(pixels[i : i + CHUNK], tf.float32)) for i in range(0, len(pixels), CHUNK)]
    return tuple(np.concatenate([piece[k].numpy() for piece in pieces]) for k in (1, 0))


Kept = dict[int, tuple[np.ndarray, np.ndarray]]  # test row -> (its activations, its pooled features)


def keeping_forward(
    extractor: keras.Model, layer_name: str, rows: np.ndarray, kept: Kept, passed: np.ndarray
) -> Forward:
    """The test split's extraction forward (batches of the `passed` rows, in order)
    that also fills `kept` for `rows`: the graph returns the activations beside the features anyway, so
    the pool then needs no second forward pass of its 32 images (the seven pools of a default sweep:
    9.5 s -> 4.4 s). Rows whose features were reused from the cache never pass: `keep_pool` passes
    those of its images."""
    graph, wanted, offset = batch_free_graph(extractor, side_output=layer_name), {int(r) for r in rows}, [0]

    def forward(batch: np.ndarray) -> np.ndarray:
        features, layer = graph(tf.convert_to_tensor(batch, tf.float32))
        features, start = features.numpy(), offset[0]
        here = [(p, int(passed[p])) for p in range(start, start + len(batch)) if int(passed[p]) in wanted]
        if here:
            values = layer.numpy()
            kept.update({row: (values[p - start].copy(), features[p - start].copy()) for p, row in here})
        offset[0] += len(batch)
        return features

    return forward


def keep_pool(extractor: keras.Model, layer_name: str, pixels: np.ndarray, labels: np.ndarray,
              n_images: int, seed: int, path: Path, kept: Kept | None = None) -> Path | None:
    """Write the pool for this extractor to `path` (None: the layer is not followed by pooling alone,
    so Grad-CAM keeps the gradient path). `pixels`, `labels`: the whole test split; `kept`: what the
    test split's extraction kept (`keeping_forward`); the pool's images it did not keep (all, without
    it) are passed forward now."""
    if not pooling_only_after(extractor, layer_name):
        return None
    rows = candidate_rows(labels, n_images, seed)
    images, kept = np.asarray(pixels[rows], np.float32), dict(kept or {})
    missing = [k for k, row in enumerate(rows) if int(row) not in kept]
    if missing:
        passed = activations(extractor, layer_name, images[missing])
        kept.update({int(rows[k]): (passed[0][i], passed[1][i]) for i, k in enumerate(missing)})
    layer, features = (np.stack([kept[int(row)][k] for row in rows]) for k in (0, 1))
    with redrawn_backbone(extractor, layer_name, seed):  # restored on exit: the extractor is shared
        redrawn_activations, redrawn_features = activations(extractor, layer_name, images[:n_images])
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            rows=rows,
            activations=layer,
            features=features,
            redrawn_activations=redrawn_activations,
            redrawn_features=redrawn_features,
        )
    return path


def read_pool(path: Path) -> dict[str, np.ndarray] | None:
    mark_used(path)  # before the read: `python -m benchmark.cache` keeps it
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        return None


def head_weights(head: keras.Model, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n, channels) d y^c / d f at each image's pooled features, c its class: Grad-CAM's channel weights
    up to the factor 1 / (h w), which the maps' normalisation removes."""
    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    final_dense(layers)
    x = tf.constant(np.asarray(features, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = tf.gather(class_logits(layers, x), np.asarray(classes, np.int32)[:, None], batch_dims=1)
        total = tf.reduce_sum(scores)
    return tape.gradient(total, x).numpy()
