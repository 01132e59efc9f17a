"""Grad-CAM (Selvaraju et al. 2017) on an assembled classifier, and the sanity check it needs.

The classifier is `pixels -> preprocess -> nested backbone -> head` (benchmark/train/head.py). Grad-CAM needs
the activations of one layer *inside* the nested backbone, so the model is taken apart generically: the
layers before the backbone, a probe model on the backbone that also returns that layer's output, and the
layers after it. Nothing here knows a backbone by name; the layer name comes from the registry.

The model-parameter randomisation test (Adebayo et al. 2018) asks whether the maps change when the
backbone's weights (ImageNet's, or a random init the head was trained on) are replaced by fresh random
ones. If they hardly change, the "explanation" is an edge detector that would look the same for any
network.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import keras
import numpy as np
import tensorflow as tf
from scipy.stats import spearmanr

from backbones.extractor import nested_base, opened_at
from backbones.one_shot import one_shot
from benchmark.errors import BenchmarkError

# The re-draw gets a seed stream of its own. Seeded with `seed` itself, a random-init backbone (built under
# keras.utils.set_random_seed(init_seed)) would be re-drawn identically whenever seed == init_seed, and
# the test would compare the model with itself.
REDRAW_STREAM = 0x5EED_CA11


def final_dense(after: list[keras.layers.Layer]) -> keras.layers.Dense:
    """The head's last layer, whose pre-softmax outputs are the class scores."""
    if not isinstance(after[-1], keras.layers.Dense):
        raise BenchmarkError(
            f"the classifier's last layer {after[-1].name!r} is not a Dense layer: Grad-CAM needs a class "
            "score to differentiate (a kNN probe has none)"
        )
    return after[-1]


def class_logits(after: list[keras.layers.Layer], x: tf.Tensor) -> tf.Tensor:
    """The head's scores before the final softmax: Selvaraju et al. differentiate the class score y^c,
    not the probability, whose gradient vanishes as p -> 1."""
    last = final_dense(after)
    for layer in after[:-1]:
        x = layer(x, training=False)
    return tf.matmul(x, last.kernel) + last.bias


Gradients = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def gradient_function(model: keras.Model, layer_name: str) -> Gradients:
    """(pixels, class indices) -> the layer's activations A (n, h, w, c) and d y^c / d A for each image's
    own class c; the backbone is taken apart once for all the maps of a model (the randomisation check
    re-draws its variables in place, so both calls run the same graph). An unoptimised graph
    (backbones/one_shot.py): eager Keras held every activation of the backbone until the call returned."""
    before, probe, after = opened_at(model, layer_name)  # a one-line error without that backbone layer
    final_dense(after)  # fails now, in one line, for a head without a class score

    def traced(x: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        for layer in before:
            x = layer(x)
        with tf.GradientTape() as tape:
            tape.watch(x)  # a frozen backbone has no trainable variables for the tape to watch by itself
            activations, features = probe(x, training=False)  # BatchNorm in inference mode, as in the model
            # Images are independent in inference mode, so one sum gives every image its own gradient.
            score = tf.reduce_sum(tf.gather(class_logits(after, features), classes, batch_dims=1))
        return activations, tape.gradient(score, activations)

    graph = one_shot(traced)

    def gradients(pixels: np.ndarray, class_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = tf.convert_to_tensor(np.asarray(pixels, np.float32))
        classes = tf.convert_to_tensor(np.asarray(class_indices, np.int32)[:, None])
        activations, grads = graph(x, classes)
        return activations.numpy(), grads.numpy()

    return gradients


def gradcam(
    model: keras.Model,
    pixels: np.ndarray,
    class_indices: np.ndarray,
    layer_name: str,
    gradients: Gradients | None = None,
) -> np.ndarray:
    """(n, s, s, 3) float32 raw pixels -> (n, s, s) maps in [0, 1] for the given classes.

    Selvaraju et al.: ReLU of the layer's channels weighted by their spatially pooled gradients
    (`weighted_maps`).
    `gradients`: the model's gradient_function, when the caller computes maps more than once.
    """
    if len(pixels) != len(class_indices):
        raise ValueError(f"{len(pixels)} images but {len(class_indices)} class indices")
    activations, gradients = (gradients or gradient_function(model, layer_name))(pixels, class_indices)
    return weighted_maps(activations, gradients.mean(axis=(1, 2)), pixels.shape[1:3])


def weighted_maps(activations: np.ndarray, channel_weights: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w, c) activations and (n, c) channel weights -> (n, *size) maps in [0, 1]: the ReLU of the
    weighted channels, upsampled bilinearly and divided by each map's peak (an all-zero map stays zero)."""
    maps = np.maximum(np.einsum("nhwc,nc->nhw", activations, channel_weights), 0.0)
    maps = tf.image.resize(maps[..., None], size, method="bilinear").numpy()[..., 0]
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0).astype(np.float32)


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Keras's default kernel initialiser (that of every kernel of these backbones), drawn by numpy:
    uniform in +-sqrt(6 / (fan_in + fan_out)), the fans counting the receptive field as Keras does."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    limit = np.sqrt(6.0 / ((shape[-2] + shape[-1]) * receptive))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


@contextmanager
def redrawn_backbone(model: keras.Model, layer_name: str, seed: int) -> Iterator[keras.Model]:
    """`model` with its backbone kernels replaced by fresh draws, restored on exit.

    Everything else stays: the head, biases, BatchNorm scales and moving statistics (without them a
    re-drawn network's activations collapse and every map is noise). Re-drawing in place costs a copy of
    the kernels; cloning the model (what this replaced) rebuilt every layer and took longer than the maps.
    """
    kernels = [v for v in nested_base(model, layer_name).weights if len(v.shape) >= 2]
    saved = [v.numpy() for v in kernels]
    rng = np.random.default_rng([REDRAW_STREAM, seed])
    try:
        for variable in kernels:
            variable.assign(glorot_uniform(rng, tuple(variable.shape)))
        yield model
    finally:
        for variable, value in zip(kernels, saved, strict=True):
            variable.assign(value)


NO_SPATIAL_INFORMATION = "not applicable (maps without spatial information)"
BLANK_WHEN_REDRAWN = "not applicable (the re-drawn model's maps are blank)"


def mean_spearman(first: np.ndarray, second: np.ndarray) -> float | None:
    """Mean over images of the Spearman rank correlation of two maps; an image either of whose maps is
    constant ranks nothing and is left out, None when all are (a re-drawn network with dead activations
    gives blank maps: counted as 0, they read as the strongest pass)."""
    values = [spearmanr(a.ravel(), b.ravel()).statistic
              for a, b in zip(first, second, strict=True) if np.ptp(a) > 0 and np.ptp(b) > 0]
    return float(np.mean(values)) if values else None


def not_compared(trained: np.ndarray) -> str:
    """Why `mean_spearman(trained, redrawn)` is None: the model's own maps, or the re-drawn model's."""
    return BLANK_WHEN_REDRAWN if has_spatial_information(trained) else NO_SPATIAL_INFORMATION


def has_spatial_information(maps: np.ndarray) -> bool:
    """Some map is not constant (a 1x1 last feature map at a small input size gives none)."""
    return any(np.ptp(m) > 0 for m in maps)


def randomization_check(
    model: keras.Model,
    pixels: np.ndarray,
    class_indices: np.ndarray,
    layer_name: str,
    seed: int,
    trained: np.ndarray | None = None,
    gradients: Gradients | None = None,
) -> float | None:
    """Adebayo et al. 2018: mean Spearman correlation between the maps of `model` and of a copy with
    re-drawn backbone kernels. Low = the maps depend on the backbone's weights; near 1 = an edge detector.
    None = not applicable: the model's maps carry no spatial information (a 1x1 last feature map at a
    small input size, or constant maps), or the re-drawn model's are all blank (`mean_spearman`), and a
    number there would read as a pass. `model` is left as found.
    `trained`: the model's maps of these images, when already computed (the panels' maps: not computed
    twice); `gradients`: its gradient_function.
    """
    gradients = gradients or gradient_function(model, layer_name)
    if trained is None:
        trained = gradcam(model, pixels, class_indices, layer_name, gradients)
    if not has_spatial_information(trained):
        return None
    with redrawn_backbone(model, layer_name, seed) as redrawn:  # the same variables, new values
        randomized = gradcam(redrawn, pixels, class_indices, layer_name, gradients)
    return mean_spearman(trained, randomized)
