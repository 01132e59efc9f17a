"""Training strategies. `frozen`: features cached once, then the head is trained on them.

Model selection (early stopping, best-weight restore) sees only train and val; test stays untouched
until evaluation.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from backbones.registry import BackboneSpec
from benchmark import batchnorm
from benchmark.data import SPLITS, Dataset
from benchmark.errors import BenchmarkError
from benchmark.features import split_features, split_pixels
from benchmark.head import assemble, head_layers, head_on_features, pooled_extractor
from benchmark.weights import LoadedBackbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    model: keras.Model  # the assembled pixels -> probabilities model
    history: pd.DataFrame
    test_probabilities: np.ndarray
    timings: dict[str, float | bool | int]


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch, and the learning rate recorded next to the losses in history."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        log.info(
            "epoch %3d  loss %.4f  acc %.4f  val_loss %.4f  val_acc %.4f",
            epoch + 1,
            logs.get("loss", np.nan),
            logs.get("accuracy", np.nan),
            logs.get("val_loss", np.nan),
            logs.get("val_accuracy", np.nan),
        )


def early_stopping(cfg: DictConfig) -> keras.callbacks.EarlyStopping:
    return keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.patience, min_delta=cfg.min_delta, restore_best_weights=True
    )


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return keras.utils.to_categorical(labels, n_classes).astype(np.float32)


def fit(model: keras.Model, x: dict, y: dict, n_classes: int, cfg: DictConfig) -> tuple[pd.DataFrame, int]:
    """Adam + categorical cross-entropy, early stopping on val_loss; the history and the restored epoch."""
    if cfg.optimizer != "adam":
        raise BenchmarkError(f"train.optimizer={cfg.optimizer!r} is not available in frozen mode: use adam")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg.lr),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = early_stopping(cfg)
    history = model.fit(
        x["train"],
        one_hot(y["train"], n_classes),
        validation_data=(x["val"], one_hot(y["val"], n_classes)),
        epochs=cfg.max_epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[EpochLog(), stop],
    )
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame[["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]], stop.best_epoch + 1


def prepare_random_backbone(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> tuple[str, dict]:
    """Recalibrate a random-init backbone's BatchNorm on train images; the features' cache id and a record."""
    if not (backbone.is_random and cfg.backbone.recalibrate_bn):
        return backbone.weights_id, {"bn_recalibrated": False}
    pixels = split_pixels(dataset, "train", image_size, Path(cfg.cache_dir))
    rows = batchnorm.sample_rows(len(pixels), cfg.backbone.bn_images)
    n_layers = batchnorm.recalibrate(
        backbone.model, spec.preprocess_input(np.asarray(pixels[rows], np.float32))
    )
    log.info("random init: BatchNorm statistics of %d layers set from %d train images", n_layers, len(rows))
    return f"{backbone.weights_id}-bn{len(rows)}", {"bn_recalibrated": n_layers > 0, "bn_images": len(rows)}


def train_frozen(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> Trained:
    """Cache pooled features of every split, train the head on them, and assemble the full model."""
    weights_id, bn_record = prepare_random_backbone(cfg, dataset, spec, backbone, image_size)
    extractor = pooled_extractor(backbone.model, spec, image_size)
    started = time.perf_counter()
    cached = {
        s: split_features(extractor, dataset, s, weights_id, Path(cfg.cache_dir), cfg.train.batch_size)
        for s in SPLITS
    }
    extraction_s = time.perf_counter() - started
    features = {s: cached[s][0] for s in SPLITS}
    labels = {s: dataset.splits[s].labels for s in SPLITS}
    keras.utils.set_random_seed(cfg.seed)
    layers = head_layers(len(dataset.class_names), cfg.head)
    head = head_on_features(features["train"].shape[1], layers)
    started = time.perf_counter()
    history, best_epoch = fit(head, features, labels, len(dataset.class_names), cfg.train)
    training_s = time.perf_counter() - started
    test_probabilities = head.predict(features["test"], batch_size=cfg.train.batch_size, verbose=0)
    timings = {
        "feature_extraction_s": extraction_s,
        "features_from_cache": all(hit for _, hit in cached.values()),
        "training_s": training_s,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        **bn_record,
    }
    return Trained(assemble(extractor, layers), history, test_probabilities, timings)
