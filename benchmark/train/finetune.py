"""The `finetune` strategy: images stream through tf.data, the head warms up, then the backbone's top trains.

Two phases, as the keras transfer-learning guide recommends: a randomly initialised head on an unfrozen
backbone would send large gradients into the pretrained weights and wreck them.
"""

import logging
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from omegaconf import DictConfig

from backbones.batchnorm import batchnorm_layers
from backbones.extractor import pooled_extractor
from backbones.registry import BackboneSpec
from backbones.weights import LoadedBackbone, ready
from benchmark.data import SPLITS, Dataset
from benchmark.data.pixels import split_pixels
from benchmark.errors import BenchmarkError
from benchmark.train.augment import augmenter
from benchmark.train.features import extract
from benchmark.train.head import assemble, fold_standardizer, head_layers, standardizer
from benchmark.train.shared import (
    Trained,
    bn_record,
    callbacks,
    class_weights,
    history_frame,
    one_hot,
    optimizer,
    recalibrate_random_backbone,
)

log = logging.getLogger(__name__)


def stream(
    pixels: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, training: bool,
    augment: keras.Sequential | None = None,
) -> tf.data.Dataset:
    """Decoded pixels (cached once per image size) -> cache -> shuffle -> batch -> augment -> prefetch.

    Only the training stream is shuffled and augmented; preprocessing happens inside the model.
    """
    data = tf.data.Dataset.from_tensor_slices((np.asarray(pixels), labels)).cache()
    if training:
        data = data.shuffle(len(pixels), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if training and augment is not None:
        # sequential on purpose: parallel calls race on the layers' shared seed state (not reproducible)
        data = data.map(lambda x, y: (augment(x, training=True), y))
    return data.prefetch(tf.data.AUTOTUNE)


def unfreeze_top(backbone: keras.Model, unfreeze: int | str) -> int:
    """Make the top `unfreeze` layers (or all) trainable, BatchNorm excepted; returns how many train."""
    if unfreeze != "all" and not (isinstance(unfreeze, int) and unfreeze >= 0):
        raise BenchmarkError(f"train.unfreeze={unfreeze!r} must be a non-negative integer or all")
    backbone.trainable = True
    cut = 0 if unfreeze == "all" else max(len(backbone.layers) - unfreeze, 0)
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= cut
    for layer in batchnorm_layers(backbone):
        layer.trainable = False  # keep BatchNorm statistics and affine terms as they are
    return sum(1 for layer in backbone.layers if layer.trainable and layer.weights)


def run_phase(model: keras.Model, streams: dict, cfg: DictConfig, lr: float, epochs: int, weights) -> tuple:
    """Compile (needed after changing `trainable`) and fit one phase; its history and restored epoch."""
    model.compile(optimizer=optimizer(cfg, lr), loss="categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=cfg.run_eagerly)
    found, stop = callbacks(cfg, lr)
    history = model.fit(streams["train"], validation_data=streams["val"], epochs=epochs, verbose=0,
                        callbacks=found, class_weight=weights, shuffle=False)  # the stream shuffles itself
    return history, stop.best_epoch + 1


def train_finetune(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> Trained:
    """Phase 1: head only at train.lr; phase 2: top layers + head at train.finetune_lr."""
    recalibrate_random_backbone(cfg, dataset, spec, backbone, image_size)
    bn = bn_record(cfg, spec, backbone, dataset)
    n_classes = len(dataset.class_names)
    keras.utils.set_random_seed(cfg.seed)  # TensorFlow's global seed too: the stream shuffles with tf.data
    pixels = {s: split_pixels(dataset, s, image_size, Path(cfg.cache_dir)) for s in SPLITS}
    labels = {s: one_hot(dataset.splits[s].labels, n_classes) for s in SPLITS}
    augment = augmenter(cfg.augment, cfg.seed)
    streams = {s: stream(pixels[s], labels[s], cfg.train.batch_size, cfg.seed, s == "train", augment)
               for s in SPLITS}
    extractor = pooled_extractor(backbone.model, spec, image_size)
    layers = head_layers(n_classes, cfg.head)
    standardize = None
    if cfg.head.standardize:  # statistics of the initial backbone's features; folded away at the end
        standardize = standardizer(extract(extractor, pixels["train"], cfg.train.batch_size, "feature stats"))
    model = assemble(extractor, [standardize, *layers] if standardize else layers)
    weights = class_weights(cfg.train, dataset.splits["train"].labels, n_classes)
    started, frames, warmup = time.perf_counter(), [], None
    if cfg.train.warmup_epochs > 0:
        history, best = run_phase(model, streams, cfg.train, cfg.train.lr, cfg.train.warmup_epochs, weights)
        frames.append(history_frame(history).assign(phase="head"))
        warmup = (best, [(variable, np.array(variable)) for variable in model.weights])  # restored weights
    trainable = unfreeze_top(backbone.model, cfg.train.unfreeze)
    log.info("fine-tuning: %d backbone layers with weights unfrozen", trainable)
    history, best = run_phase(model, streams, cfg.train, cfg.train.finetune_lr, cfg.train.max_epochs, weights)
    first = sum(len(f) for f in frames) + 1
    frames.append(history_frame(history, first).assign(phase="finetune"))
    full = pd.concat(frames, ignore_index=True)
    restored = first + best - 1
    if warmup is not None and full["val_loss"].iloc[warmup[0] - 1] < full["val_loss"].iloc[restored - 1]:
        # one model is chosen by validation loss across both phases: fine-tuning did not beat the warm-up
        log.info("the head-only epoch %d had a lower validation loss than fine-tuning: keeping it", warmup[0])
        for variable, value in warmup[1]:
            variable.assign(value)
        restored = warmup[0]
    timings = {
        "feature_extraction_s": 0.0, "features_from_cache": False,
        "training_s": time.perf_counter() - started, "epochs_run": len(full), "best_epoch": restored,
        "best_val_loss": float(full["val_loss"].iloc[restored - 1]),
        "best_val_accuracy": float(full["val_accuracy"].iloc[restored - 1]),
        "best_phase": str(full["phase"].iloc[restored - 1]),
        "unfrozen_layers": trainable, "augment": cfg.augment.name, **bn,
    }
    if standardize is not None:
        fold_standardizer(standardize, layers[0])
        model = assemble(extractor, layers)
    val_probabilities = model.predict(streams["val"], verbose=0)
    test_probabilities = model.predict(streams["test"], verbose=0)
    return Trained(ready(model), full, test_probabilities, timings, val_probabilities)
