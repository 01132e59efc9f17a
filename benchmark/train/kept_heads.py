"""The frozen head as a compiled Keras model kept by the process and reused by every seed.

Keras traces a new model's train, test and predict functions on their first use, and in a sweep cell on
cached features those traces were most of the head's cost (a head on 420 x 1024 features: fit 1.1-1.3 s
as a new model, 0.5-0.7 s with its functions kept; predict 0.1-0.35 s vs 0.05 s). The seeds of a sweep
train the same head, so a process keeps each compiled head, and for a new seed gives it the variables of
a head freshly built under that seed (weights and the dropout's seed state) and a reset optimizer: the
same numbers a new model gives, without the traces. The head takes features standardised outside it
(train/frozen.py), so nothing of the data is in its graph: backbones of the same feature width share it
too (InceptionV3, Xception and ResNet50 in a default sweep: two fewer traces, 2.5 s each on 2 cores).
"""

from collections import OrderedDict
from dataclasses import dataclass

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from backbones.seeding import seed_run
from benchmark.files import digest
from benchmark.train.head import assemble, head_layers, head_on_features, steps_per_epoch
from benchmark.train.shared import optimizer

KEPT_HEADS = 8  # a default sweep alternates between the heads of 5 feature widths; older ones are released


@dataclass
class Head:
    """The head (`model`: features -> probabilities, compiled and trained), `saved`: a second model over
    the same layers, never compiled, which is what head.keras holds (the optimizer's state tripled the
    file: 6.3 MB instead of 2.1 MB for 2048 features), and its layers, for the assembled model's copies."""

    model: keras.Model
    saved: keras.Model
    layers: list[keras.layers.Layer]


_kept: OrderedDict[str, Head] = OrderedDict()


def build_head(feature_dim: int, n_classes: int, cfg: DictConfig) -> Head:
    """A new head under the current random seed: building it draws the initial weights, tracing nothing."""
    layers = head_layers(n_classes, cfg.head)
    return Head(head_on_features(feature_dim, layers), head_on_features(feature_dim, layers), layers)


def compile_head(model: keras.Model, cfg: DictConfig, n_train: int) -> None:
    model.compile(
        optimizer=optimizer(cfg, cfg.lr),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=cfg.run_eagerly,
        steps_per_execution=steps_per_epoch(n_train, cfg.batch_size),
    )


def seeded_head(feature_dim: int, n_train: int, n_classes: int, cfg: DictConfig) -> Head:
    """A compiled head initialised exactly as a new one under `cfg.seed`; the process's kept head of this
    shape and these settings when it has one (`n_train` sets the steps compiled into one call)."""
    seed_run(cfg.seed)
    fresh = build_head(feature_dim, n_classes, cfg)
    settings = OmegaConf.to_container(cfg.head), OmegaConf.to_container(cfg.train)
    key = digest(feature_dim, n_train, n_classes, *settings)
    kept = _kept.get(key)
    if kept is None:
        compile_head(fresh.model, cfg.train, n_train)
        _kept[key] = fresh
        while len(_kept) > KEPT_HEADS:
            _kept.popitem(last=False)
        return fresh
    _kept.move_to_end(key)
    for target, source in zip(kept.model.variables, fresh.model.variables, strict=True):
        target.assign(source)  # weights and the dropout's seed state
    reset_optimizer(kept.model.optimizer, cfg.train.lr)
    return kept


def reset_optimizer(used: keras.optimizers.Optimizer, lr: float) -> None:
    """The state of a new optimizer: step count and moment estimates zero, the configured learning rate."""
    for variable in used.variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    used.learning_rate = float(lr)


def assembled(extractor: keras.Model, head: Head) -> keras.Model:
    """Pixels -> probabilities with copies of the trained (folded) head layers. The kept layers are not
    called on the extractor: Keras would record that call in them, and the kept head would then hold
    every backbone it was ever assembled with (measured: the sweep's warm cells at 2.1 GB instead of
    1.7 GB); and the next seed re-seeds the kept layers, which must not change this run's model."""
    copies = [type(layer).from_config(layer.get_config()) for layer in head.layers]
    model = assemble(extractor, copies)
    for copy, layer in zip(copies, head.layers, strict=True):
        copy.set_weights(layer.get_weights())
    return model
