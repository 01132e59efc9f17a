"""The classification head and the assembled model: GAP -> Dense -> Dropout -> Dense(softmax).

Pooled features of a frozen backbone can sit far from zero with tiny spread (random-init VGG19's vary
by ~5% around their mean), which stalls Adam before early stopping ends training. The head is therefore
trained on features standardised with train-split statistics, and the standardisation is folded into
the first Dense layer afterwards: an exact reparametrisation, so the saved head is the plain one.
"""

import keras
import numpy as np
from omegaconf import DictConfig


def head_layers(n_classes: int, cfg: DictConfig) -> list[keras.layers.Layer]:
    """The layers after pooling; shared by the feature-space model and the assembled one."""
    return [
        keras.layers.Dense(cfg.units, activation="relu", name="head_dense"),
        keras.layers.Dropout(cfg.dropout, name="head_dropout"),
        keras.layers.Dense(n_classes, activation="softmax", name="head_output"),
    ]


def standardizer(train_features: np.ndarray) -> keras.layers.Normalization:
    """A fixed (x - mean) / std layer with train-split statistics; constant features get std 1."""
    std = train_features.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return keras.layers.Normalization(mean=train_features.mean(axis=0), variance=std**2, name="standardize")


def fold_standardizer(standardize: keras.layers.Normalization, dense: keras.layers.Dense) -> None:
    """Dense(W, b) after (x - m) / s equals Dense(W / s, b - (m / s) W) on raw x: merge them."""
    mean = keras.ops.convert_to_numpy(standardize.mean).reshape(-1)
    std = np.sqrt(keras.ops.convert_to_numpy(standardize.variance).reshape(-1))
    std = np.maximum(std, keras.config.epsilon())  # what Normalization divides by
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / std[:, None], bias - (mean / std) @ kernel])


def stack(inputs, layers: list[keras.layers.Layer]):
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


def head_on_features(feature_dim: int, layers: list[keras.layers.Layer]) -> keras.Model:
    """The head alone, trained on cached pooled features."""
    inputs = keras.Input(shape=(feature_dim,), name="features")
    return keras.Model(inputs, stack(inputs, layers), name="head")


def assemble(extractor: keras.Model, layers: list[keras.layers.Layer]) -> keras.Model:
    """Pixels -> class probabilities: the same layer objects, so it is the same model as the cached path."""
    return keras.Model(extractor.inputs, stack(extractor.outputs[0], layers), name="classifier")
