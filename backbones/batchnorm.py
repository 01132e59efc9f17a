"""BatchNorm statistics for random-init backbones.

A freshly initialised keras.applications model carries placeholder moving statistics (mean 0, var 1).
Frozen, in inference mode, its activations then shrink layer by layer: MobileNetV2's pooled features
come out near 1e-12 and no head can learn from them. Setting the moving statistics from a sample of
training images (never val or test) gives the meaningful "random features" baseline. Runs record it.
"""

import keras
import numpy as np
import tensorflow as tf

from backbones.node_walk import walk


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def sample_rows(n_rows: int, n_sample: int) -> np.ndarray:
    """Evenly spaced rows, so a class-sorted split contributes every class."""
    return np.unique(np.linspace(0, n_rows - 1, min(n_sample, n_rows)).astype(int))


def recalibrate(backbone: keras.Model, preprocessed: np.ndarray) -> int:
    """Set every BatchNorm's moving mean/variance to the statistics of one batch; returns the layer count.

    With momentum 0, one forward pass in training mode makes each layer's moving statistics exactly
    its batch statistics, computed on inputs normalised the same way by the layers before it. The pass
    walks the model node by node (node_walk.py: Keras's own eager call held +2 GB for DenseNet121, a
    traced graph cost twice the time).
    """
    layers = batchnorm_layers(backbone)
    if not layers:  # VGG19: the pass would set nothing (it cost 1.9 s of tracing and forward at 128 px)
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        walk(backbone, [tf.constant(preprocessed, tf.float32)], training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)
