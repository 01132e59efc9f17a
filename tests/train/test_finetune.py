"""Fine-tune mode and the training options, on real models (graph mode, as users run them)."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import backbones.preprocess  # noqa: F401  registers the Preprocess layer for loading model.keras
from backbones.batchnorm import batchnorm_layers
from backbones.registry import build, get
from benchmark.errors import BenchmarkError
from benchmark.metrics import scores
from benchmark.runs.pipeline import run
from benchmark.train.augment import augmenter
from benchmark.train.finetune import stream, unfreeze_top
from benchmark.train.shared import class_weights


def run_dir_of(metrics: dict, results_dir: str) -> Path:
    return Path(results_dir) / "runs" / metrics["dataset"] / metrics["backbone"] / \
        f"seed{metrics['seed']}-{metrics['config_hash']}"


def test_two_phases_unfreeze_the_top_and_keep_batchnorm_frozen(tiny_cfg):
    cfg = tiny_cfg("train=finetune", "augment=light", "train.warmup_epochs=1", "train.max_epochs=1",
                   "train.unfreeze=10", "train.class_weight=balanced")
    metrics = run(cfg)
    assert metrics["train_mode"] == "finetune" and metrics["augment"] == "light"
    assert 0 < metrics["unfrozen_layers"] <= 10
    run_dir = run_dir_of(metrics, cfg.results_dir)
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["phase"]) == ["head", "finetune"] and list(history["epoch"]) == [1, 2]
    assert history["lr"].tolist() == pytest.approx([1e-3, 1e-5])
    best = int(history["val_loss"].idxmin())  # one model across both phases, chosen by validation loss
    assert metrics["best_epoch"] == best + 1
    assert metrics["best_val_loss"] == pytest.approx(history["val_loss"].min())
    assert metrics["best_phase"] == history["phase"][best]
    val = pd.read_csv(run_dir / "val_predictions.csv")  # written by the model that was kept
    probabilities = val[[f"prob_{c}" for c in metrics["classes"]]].to_numpy()
    labels = val["true_label"].map(metrics["classes"].index).to_numpy()
    kept_loss = scores.log_loss(labels, probabilities)
    assert kept_loss == pytest.approx(metrics["best_val_loss"], abs=1e-3)
    model = keras.models.load_model(run_dir / "model.keras")
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert all(not layer.trainable for layer in batchnorm_layers(base))
    assert any(layer.trainable for layer in base.layers[-10:]) and not base.layers[1].trainable


def test_frozen_mode_refuses_augmentation(tiny_cfg):
    with pytest.raises(BenchmarkError, match="needs train=finetune"):
        run(tiny_cfg("augment=strong"))


def test_sgd_with_step_lr_decays_the_learning_rate(tiny_cfg):
    cfg = tiny_cfg("train.optimizer=sgd", "train.lr=0.1", "train.step_size=1", "train.gamma=0.5",
                   "train.max_epochs=3", "train.patience=10")
    history = pd.read_csv(run_dir_of(run(cfg), cfg.results_dir) / "history.csv")
    assert history["lr"].tolist() == pytest.approx([0.1, 0.05, 0.025])


def test_unfreeze_counts_and_bad_values():
    base = build(get("mobilenetv2"), 32, None)
    assert unfreeze_top(base, 5) <= 5
    with_weights = [layer for layer in base.layers if layer.weights]
    assert unfreeze_top(base, "all") == sum(1 for layer in with_weights
                                            if not isinstance(layer, keras.layers.BatchNormalization))
    with pytest.raises(BenchmarkError, match="non-negative integer or all"):
        unfreeze_top(base, "half")


def test_balanced_class_weights_follow_inverse_frequency():
    weights = class_weights(OmegaConf.create({"class_weight": "balanced"}), np.array([0, 0, 0, 1]), 3)
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[2] == 1.0
    assert class_weights(OmegaConf.create({"class_weight": None}), np.array([0, 1]), 2) is None


def test_only_the_training_stream_is_shuffled_and_augmented():
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(2, dtype=np.float32)[np.arange(16) % 2]
    strong = OmegaConf.create({"name": "strong", "flip": "horizontal", "rotation": 0.1, "zoom": 0.2,
                               "translation": 0.1, "contrast": 0.3})
    evaluation = np.concatenate([x for x, _ in stream(pixels, labels, 8, 0, False, augmenter(strong, 0))])
    np.testing.assert_array_equal(evaluation, pixels.astype(np.float32))
    training = np.concatenate([x for x, _ in stream(pixels, labels, 8, 0, True, augmenter(strong, 0))])
    assert training.shape == evaluation.shape and not np.allclose(np.sort(training, axis=None),
                                                                  np.sort(evaluation, axis=None))
