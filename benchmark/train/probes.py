"""The `linear` and `knn` regimes: scikit-learn probes on the frozen backbone's cached pooled features.

They answer "does training a head (or fine-tuning) pay off over a probe?" at the cost of seconds, on the
same feature cache, splits, evaluation and run directory as `frozen`. Each is saved as a Keras head on
the shared extractor, so predict, explain and export work on them like on any run: the logistic
regression folds into one Dense softmax layer exactly; the kNN vote is a small layer holding the train
features. The reported probabilities are scikit-learn's; the saved head must reproduce them on the
validation split (`head_parity_max_difference`, warned above FOLD_TOLERANCE).
"""

import time

import keras
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from backbones.registry import BackboneSpec
from backbones.weights import LoadedBackbone
from benchmark.data import Dataset
from benchmark.metrics import scores
from benchmark.train.frozen import cached_features
from benchmark.train.head import assemble, check_fold, fold_scale, head_on_features, scale_of
from benchmark.train.shared import Trained, training_record

PARITY = "head_parity_max_difference"  # the saved Keras head against scikit-learn, on validation


def scores_row(step: int, model, x: dict, y: dict, n_classes: int, phase: str) -> dict:
    """One history.csv line for a probe: train and validation loss and accuracy of one setting."""
    row: dict = {"epoch": step, "lr": np.nan, "phase": phase}
    for split, prefix in (("train", ""), ("val", "val_")):
        probabilities = class_probabilities(model, x[split], n_classes)
        row[f"{prefix}loss"] = scores.log_loss(y[split], probabilities)
        row[f"{prefix}accuracy"] = scores.accuracy(y[split], probabilities)
    return row


def timings_of(history: pd.DataFrame, best: int, fit_s: float, parity: dict, features: dict) -> dict:
    """A probe is fitted, not trained for epochs: its history's lines are the settings it tried (C of the
    grid, k), `settings_fitted`; `epochs_run` is left out (the leaderboard's epochs column read 7 for a
    7-value C grid)."""
    return {**features, **training_record(history, best, fit_s, steps="settings_fitted"), **parity}


def logistic_head(
    model: LogisticRegression, mean: np.ndarray, std: np.ndarray, n_classes: int
) -> keras.layers.Dense:
    """The fitted regression on (x - mean) / std as one Dense softmax layer on raw features (exact):
    binary sigmoid(z) = softmax([-z/2, z/2]); a class absent from train gets probability 0, as in
    scikit-learn's (it has no column for it)."""
    dense = keras.layers.Dense(n_classes, activation="softmax", name="head_output")
    dense.build((None, len(mean)))
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:
        coef, intercept = np.r_[-coef, coef] / 2, np.r_[-intercept, intercept] / 2
    kernel = np.zeros((len(mean), n_classes), np.float32)
    bias = np.full(n_classes, -1e9, np.float32)
    kernel[:, model.classes_], bias[model.classes_] = coef.T, intercept
    dense.set_weights([kernel, bias])
    fold_scale(dense, mean, std)  # the saved head takes raw features, like the frozen head
    return dense


def train_linear(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> Trained:
    """Multinomial logistic regression on train-standardised features; its inverse regularisation C is
    the grid value with the lowest validation log loss (history.csv has one line per C)."""
    found = cached_features(cfg, dataset, spec, backbone, image_size)
    n_classes = len(dataset.class_names)
    mean, std = scale_of(found.features["train"])
    x = {split: (values - mean) / std for split, values in found.features.items()}
    started, rows, fitted = time.perf_counter(), [], []
    for step, c in enumerate(cfg.train.c_grid, start=1):
        model = LogisticRegression(C=float(c), max_iter=cfg.train.max_iter,
                                   class_weight=cfg.train.class_weight, random_state=cfg.seed)
        model.fit(x["train"], found.labels["train"])
        fitted.append(model)
        rows.append(scores_row(step, model, x, found.labels, n_classes, f"C={c:g}"))
    fit_s = time.perf_counter() - started
    history = pd.DataFrame(rows)
    best = int(history["val_loss"].to_numpy().argmin()) + 1
    chosen = fitted[best - 1]
    dense = logistic_head(chosen, mean, std, n_classes)
    head = head_on_features(x["train"].shape[1], [dense])
    val_probabilities = class_probabilities(chosen, x["val"], n_classes)
    parity = check_fold(val_probabilities, head.predict(found.features["val"], verbose=0), PARITY)
    return Trained(
        lambda: assemble(found.extractor(), [dense]),
        history,
        class_probabilities(chosen, x["test"], n_classes),
        timings_of(history, best, fit_s, parity, found.timings) | {"linear_c": float(chosen.C)},
        val_probabilities,
        head=head,
        extractor=found.extractor,
    )


@keras.saving.register_keras_serializable(package="medbench")
class NearestNeighbourVote(keras.layers.Layer):
    """Class probabilities as the share of the k most cosine-similar train images in each class."""

    def __init__(self, n_train: int, n_classes: int, k: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_train, self.n_classes, self.k = n_train, n_classes, k

    def build(self, input_shape) -> None:
        self.memory = self.add_weight(shape=(self.n_train, input_shape[-1]), initializer="zeros",
                                      trainable=False, name="memory")  # L2-normalised train features
        self.votes = self.add_weight(shape=(self.n_train, self.n_classes), initializer="zeros",
                                     trainable=False, name="votes")  # their one-hot labels

    def call(self, features):
        ops = keras.ops
        unit = features / ops.maximum(ops.norm(features, axis=-1, keepdims=True), 1e-12)
        _, nearest = ops.top_k(ops.matmul(unit, ops.transpose(self.memory)), self.k)
        return ops.mean(ops.take(self.votes, nearest, axis=0), axis=1)

    def get_config(self) -> dict:
        return super().get_config() | {"n_train": self.n_train, "n_classes": self.n_classes, "k": self.k}


def class_probabilities(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (scikit-learn has columns only for those in train)."""
    found = np.zeros((len(x), n_classes))
    found[:, model.classes_] = model.predict_proba(x)
    return found


def unit_rows(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)


def train_knn(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> Trained:
    """k nearest neighbours by cosine distance on L2-normalised features (k capped at the train size)."""
    found = cached_features(cfg, dataset, spec, backbone, image_size)
    n_classes = len(dataset.class_names)
    x = {split: unit_rows(values) for split, values in found.features.items()}
    k = min(int(cfg.train.k), len(x["train"]))
    started = time.perf_counter()
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    model.fit(x["train"], found.labels["train"])
    probabilities = {split: class_probabilities(model, x[split], n_classes) for split in ("val", "test")}
    fit_s = time.perf_counter() - started
    vote = NearestNeighbourVote(len(x["train"]), n_classes, k, name="head_output")
    head = head_on_features(x["train"].shape[1], [vote])
    one_hot = np.eye(n_classes, dtype=np.float32)[found.labels["train"]]
    vote.set_weights([x["train"].astype(np.float32), one_hot])
    parity = check_fold(probabilities["val"], head.predict(found.features["val"], verbose=0), PARITY)
    eps = 1e-7  # a class with no neighbour gets probability 0: clipped for the log loss only
    val_loss = scores.log_loss(found.labels["val"], np.clip(probabilities["val"], eps, 1))
    history = pd.DataFrame([{
        "epoch": 1, "loss": np.nan, "accuracy": np.nan, "val_loss": val_loss,
        "val_accuracy": scores.accuracy(found.labels["val"], probabilities["val"]),
        "lr": np.nan, "phase": f"k={k}",
    }])
    return Trained(
        lambda: assemble(found.extractor(), [vote]),
        history,
        probabilities["test"],
        timings_of(history, 1, fit_s, parity, found.timings) | {"knn_k": k},
        probabilities["val"],
        head=head,
        extractor=found.extractor,
    )
