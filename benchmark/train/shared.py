"""What every training strategy shares: the result record, optimizers, callbacks, class weights, history,
and the BatchNorm recalibration of a random-init backbone.

Model selection (early stopping, best-weight restore) sees only train and val; test stays untouched
until evaluation.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.utils.class_weight import compute_class_weight

from backbones import batchnorm
from backbones.extractor import Forward, batch_free_forward
from backbones.registry import BackboneSpec
from backbones.weights import LoadedBackbone
from benchmark.data import Dataset
from benchmark.data.pixels import split_pixels
from benchmark.errors import BenchmarkError
from benchmark.metrics.efficiency import parameter_counts
from benchmark.runs.settings import OPTIMIZERS  # checked there before any work

log = logging.getLogger(__name__)
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]


@dataclass
class Trained:
    assemble: Callable[[], keras.Model] = field(repr=False)  # the pixels -> probabilities model, built on use
    history: pd.DataFrame
    test_probabilities: np.ndarray
    timings: dict[str, float | bool | int]
    val_probabilities: np.ndarray | None = None  # for validation-side choices (calibration, thresholds)
    head: keras.Model | None = None  # frozen: the head alone, saved beside the shared extractor file
    extractor: Callable[[], keras.Model] | None = None  # frozen: the shared extractor (`.path`, its file)
    gradcam_kept: dict | None = None  # frozen: activations kept for a sweep's Grad-CAM (saliency/pool.py)

    @cached_property
    def model(self) -> keras.Model:
        """The assembled model; a frozen run with cached features builds (or loads) it only here."""
        return self.assemble()

    def forward(self) -> Forward:
        """pixels -> probabilities as the run computes them, for timing: a frozen run's extractor graph
        (the one its extraction traced, so batch 1 costs no new trace) then its head's graph; otherwise
        the assembled model's graph."""
        if self.extractor is None or self.head is None:
            return batch_free_forward(self.model)
        backbone, head = batch_free_forward(self.extractor()), batch_free_forward(self.head)
        return lambda pixels: head(backbone(pixels))

    @property
    def cost_key(self) -> dict:
        """What the run's cost depends on beyond the backbone and the settings, for the efficiency cache's
        key: the parameter counts of the head (of the model for fine-tuning), which follow the number of
        classes and, for the kNN vote, the train images it holds. Cheap: the head is built, and a model
        that is not frozen is built already."""
        return parameter_counts(self.head if self.head is not None else self.model)


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch, and the learning rate recorded next to the losses in history."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        log.info(
            "epoch %3d  loss %.4f  acc %.4f  val_loss %.4f  val_acc %.4f  lr %.2g", epoch + 1,
            logs.get("loss", np.nan), logs.get("accuracy", np.nan),
            logs.get("val_loss", np.nan), logs.get("val_accuracy", np.nan), logs["lr"],
        )


def optimizer(cfg: DictConfig, lr: float) -> keras.optimizers.Optimizer:
    """Adam or SGD at `lr`; an int rate or momentum (train.lr=1) as a float, which Keras insists on."""
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=float(lr))
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=float(lr), momentum=float(cfg.momentum))
    raise BenchmarkError(f"train.optimizer={cfg.optimizer!r} is unknown: use one of {', '.join(OPTIMIZERS)}")


def callbacks(cfg: DictConfig, lr: float) -> tuple[list, keras.callbacks.EarlyStopping]:
    """Epoch log, early stopping on val_loss with best-weight restore, and the optional StepLR schedule."""
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.patience, min_delta=cfg.min_delta, restore_best_weights=True
    )
    found: list[keras.callbacks.Callback] = [stop, EpochLog()]
    if cfg.step_size:
        found.insert(0, keras.callbacks.LearningRateScheduler(
            lambda epoch: float(lr * cfg.gamma ** (epoch // cfg.step_size))))
    return found, stop


def class_weights(cfg: DictConfig, labels: np.ndarray, n_classes: int) -> dict[int, float] | None:
    """`balanced`: inverse class frequency of the training labels, as sklearn defines it."""
    if cfg.class_weight is None:
        return None
    if cfg.class_weight != "balanced":
        raise BenchmarkError(f"train.class_weight={cfg.class_weight!r} is unknown: use null or balanced")
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(k): float(w) for k, w in zip(present, weights, strict=True)} | {
        k: 1.0 for k in range(n_classes) if k not in present}


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return keras.utils.to_categorical(labels, n_classes).astype(np.float32)


def history_frame(history: keras.callbacks.History, first_epoch: int = 1) -> pd.DataFrame:
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(first_epoch, first_epoch + len(frame)))
    return frame[HISTORY_COLUMNS]


def features_weights_id(cfg: DictConfig, dataset: Dataset, backbone: LoadedBackbone) -> str:
    """What frozen features are keyed on: the weights, a preprocessing override, and for a recalibrated
    random-init backbone the number of train images that set its BatchNorm statistics (known without
    building the network)."""
    key = backbone.weights_id
    if cfg.backbone.get("preprocess"):
        key += f"-pp{cfg.backbone.preprocess}"
    if backbone.is_random and cfg.backbone.recalibrate_bn:
        key += f"-bn{bn_sample_size(cfg, dataset)}"
    return key


def bn_sample_size(cfg: DictConfig, dataset: Dataset) -> int:
    """How many train images set a random-init backbone's BatchNorm statistics."""
    return len(batchnorm.sample_rows(len(dataset.splits["train"]), cfg.backbone.bn_images))


def recalibrate_random_backbone(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> int:
    """Set a random-init backbone's BatchNorm statistics from train images; the number of layers set."""
    if not (backbone.is_random and cfg.backbone.recalibrate_bn):
        return 0
    pixels = split_pixels(dataset, "train", image_size, Path(cfg.cache_dir))
    rows = batchnorm.sample_rows(len(pixels), cfg.backbone.bn_images)
    sample = spec.preprocess_input(np.asarray(pixels[rows], np.float32))
    n_layers = batchnorm.recalibrate(backbone.model, sample)
    log.info("random init: BatchNorm statistics of %d layers set from %d train images", n_layers, len(rows))
    return n_layers


def bn_record(cfg: DictConfig, spec: BackboneSpec, backbone: LoadedBackbone, dataset: Dataset) -> dict:
    """What metrics.json says about the recalibration (known without building the network)."""
    if not (backbone.is_random and cfg.backbone.recalibrate_bn):
        return {"bn_recalibrated": False}
    return {"bn_recalibrated": spec.batchnorm, "bn_images": bn_sample_size(cfg, dataset)}


def training_record(history: pd.DataFrame, best: int, seconds: float, steps: str = "epochs_run") -> dict:
    """What metrics.json says about training: its time, steps run (`steps`: epochs, or a probe's settings
    fitted) and the validation-chosen step."""
    return {
        "training_s": seconds,
        steps: len(history),
        "best_epoch": best,
        "best_val_loss": float(history["val_loss"].iloc[best - 1]),
        "best_val_accuracy": float(history["val_accuracy"].iloc[best - 1]),
    }
