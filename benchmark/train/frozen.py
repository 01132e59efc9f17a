"""The `frozen` strategy: pooled features cached once per backbone, only the head is trained on them."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from backbones.extractor import batch_free_graph, pooled_extractor
from backbones.registry import BackboneSpec
from backbones.weights import LoadedBackbone
from benchmark.data import SPLITS, Dataset
from benchmark.metrics.scores import accuracy
from benchmark.runs.layout import extractor_path, onnx_path
from benchmark.saliency.pool import Kept, candidate_rows, keeping_forward, pooled_images
from benchmark.train import engines
from benchmark.train.features import FeaturePlan, SourceRemoved, engines_in, plan_features, split_features
from benchmark.train.head import (
    check_fold,
    feature_batches,
    fold_scale,
    head_probabilities,
    scale_of,
    steps_per_epoch,
)
from benchmark.train.kept_heads import assembled, seeded_head
from benchmark.train.shared import (
    Trained,
    bn_record,
    callbacks,
    class_weights,
    features_weights_id,
    history_frame,
    one_hot,
    recalibrate_random_backbone,
    training_record,
)
from benchmark.train.shared_extractor import extractor_key, shared_extractor

log = logging.getLogger(__name__)


class EagerValidation(keras.callbacks.Callback):
    """val_loss and val_accuracy after each epoch from one eager call of the head on the validation
    features, written into the epoch's logs before early stopping reads them (first in the list).
    Keras's `validation_data` traced an evaluate function in every new process for the same numbers: a
    further seed as its own process trained its head in 2.02 s instead of 2.43 s (medians of five
    alternating runs, the same logged losses)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray) -> None:
        super().__init__()
        self.features, self.labels = features, labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        probabilities = head_probabilities(self.model, self.features)
        # Keras's own loss (its clipping), not sklearn's log loss: the number early stopping always read
        losses = keras.losses.sparse_categorical_crossentropy(self.labels, probabilities)
        logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(losses)))
        logs["val_accuracy"] = accuracy(self.labels, probabilities)


def fit_head(
    model: keras.Model, x: dict, y: dict, n_classes: int, cfg: DictConfig, seed: int
) -> tuple[pd.DataFrame, int]:
    """The compiled head on cached features (shuffled by `seed`); the history and the epoch whose
    weights were restored."""
    found, stop = callbacks(cfg, cfg.lr)
    found.insert(0, EagerValidation(x["val"], y["val"]))
    targets = one_hot(y["train"], n_classes)
    history = model.fit(
        feature_batches(x["train"], targets, cfg.batch_size, seed, cfg.max_epochs),
        epochs=cfg.max_epochs,
        steps_per_epoch=steps_per_epoch(len(targets), cfg.batch_size),
        shuffle=False,  # the batches come in their epoch's order
        verbose=0,
        callbacks=found,
        class_weight=class_weights(cfg, y["train"], n_classes),
    )
    return history_frame(history).assign(phase="head"), stop.best_epoch + 1


def frozen_extractor(
    cfg: DictConfig,
    dataset: Dataset,
    spec: BackboneSpec,
    backbone: LoadedBackbone,
    image_size: int,
    weights_id: str,
) -> Callable[[], keras.Model]:
    """The extractor shared by every run of this backbone (`shared_extractor.py`; `.path`: where it is)."""
    recalibrated = backbone.is_random and cfg.backbone.recalibrate_bn  # its BatchNorm saw train images
    key = extractor_key(spec.name, image_size, weights_id, dataset.fingerprint if recalibrated else None)
    path = extractor_path(Path(cfg.results_dir), spec.name, image_size, key)

    def build() -> keras.Model:
        recalibrate_random_backbone(cfg, dataset, spec, backbone, image_size)
        return pooled_extractor(backbone.model, spec, image_size)

    def prepare(model: keras.Model) -> None:
        if pooled_images(cfg.explain):  # this run keeps Grad-CAM's pool (runs/pipeline.py):
            batch_free_graph(model, side_output=spec.last_conv_layer)  # from the extraction's own graph

    return shared_extractor(path, build, prepare)


def test_engine_keeping_pool(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, extractor: Callable[[], keras.Model],
    engine: Callable[[], engines.Engine], kept: Kept, passed: np.ndarray,
) -> Callable[[], engines.Engine]:
    """The test split's engine: TensorFlow's forward then also keeps the activations of the images the
    run pools for Grad-CAM (saliency/pool.py `keeping_forward`; `passed`: the test rows the extraction
    gives it, in order); other engines have no side output (the pool then passes its images forward
    itself)."""
    n_images = pooled_images(cfg.explain)
    if not n_images:
        return engine
    rows = candidate_rows(dataset.splits["test"].labels, n_images, int(cfg.explain.seed))

    def get() -> engines.Engine:
        found = engine()
        if found.name != "tf":
            return found
        return replace(found, forward=keeping_forward(extractor(), spec.last_conv_layer, rows, kept, passed))

    return get


def extraction_engine(
    cfg: DictConfig, extractor: Callable[[], keras.Model], image_size: int, n_images: int
) -> Callable[[], engines.Engine]:
    """The forward pass for features not cached yet, made once on first use (`runtime.engine`; `auto`
    weighs the `n_images` to pass through the network against the export's cost,
    runtime.onnx_min_workload)."""
    made: list[engines.Engine] = []

    def get() -> engines.Engine:
        if not made:
            import tensorflow as tf

            onnx_file = onnx_path(extractor.path)
            work = engines.workload(n_images, image_size)
            gpu = bool(tf.config.list_physical_devices("GPU"))
            name = engines.choose(
                cfg.runtime.engine, work, cfg.runtime.onnx_min_workload, onnx_file.exists(), gpu
            )
            threads = tf.config.threading.get_intra_op_parallelism_threads()
            made.append(engines.engine(name, extractor(), extractor.path, threads))
        return made[0]

    return get


def engine_record(record: dict) -> dict:
    """Which engine computed the features, what its export cost here (0: reused), its measured parity."""
    return {
        "extraction_engine": record["engine"],
        "engine_version": record.get("version"),  # ONNX Runtime or OpenVINO (TF: the manifest)
        "engine_export_s": record.get("export_s"),
        "engine_onnx_writer": record.get("onnx_writer"),  # medbench (onnx_graph.py) or tf2onnx; None: reused
        "engine_parity_max_rel": record.get("parity_max_rel"),
    }


@dataclass
class CachedFeatures:
    """Pooled features and labels of every split, the shared extractor, and what getting them cost."""

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    extractor: Callable[[], keras.Model]  # the shared extractor (`.path`, its file; `.seconds`)
    timings: dict
    gradcam_kept: Kept  # what a sweep cell's Grad-CAM pool needs, kept by the test split's extraction


def cached_features(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> CachedFeatures:
    """Every split's pooled features from the cache, computed now where missing (the network is built
    only then). Shared by the frozen head and the probes (train/probes.py)."""
    weights_id = features_weights_id(cfg, dataset, backbone)
    extractor = frozen_extractor(cfg, dataset, spec, backbone, image_size, weights_id)
    started, steady = time.perf_counter(), []
    name, cache_dir, batch = f"{spec.name}_features", Path(cfg.cache_dir), cfg.train.batch_size

    def planned(s: str) -> FeaturePlan:
        return plan_features(extractor.path.name, name, image_size, dataset, s, cache_dir)

    plans = {s: planned(s) for s in SPLITS}
    to_extract = sum(len(plan.to_extract) for plan in plans.values() if not plan.cached)
    engine, kept = extraction_engine(cfg, extractor, image_size, to_extract), {}

    def fill(s: str) -> tuple[np.ndarray, bool, dict]:
        split_engine = (engine if s != "test"
                        else test_engine_keeping_pool(cfg, dataset, spec, extractor, engine, kept,
                                                      plans[s].to_extract))
        return split_features(plans[s], extractor, dataset, image_size, cache_dir, batch, steady,
                              split_engine)

    def fill_or_plan_again(s: str) -> tuple[np.ndarray, bool, dict]:
        try:
            return fill(s)
        except SourceRemoved as error:  # by `python -m benchmark.cache` since the plan: plan the split again
            log.info("%s; planning features %s again", error, s)
            plans[s] = planned(s)
            return fill(s)

    cached = {s: fill_or_plan_again(s) for s in SPLITS}
    extraction_s = time.perf_counter() - started
    images, seconds = np.sum(steady, axis=0) if steady else (0, 0.0)
    filled = [s for s in SPLITS if not cached[s][1]]
    extracted = [s for s in filled if len(plans[s].to_extract)]  # this run's engine computed some rows
    return CachedFeatures(
        {s: cached[s][0] for s in SPLITS},
        {s: dataset.splits[s].labels for s in SPLITS},
        extractor,
        {
            "feature_extraction_s": extraction_s,
            "extractor_ready_s": extractor.seconds,  # of which building/loading the network (0: not needed)
            "features_from_cache": not filled,
            # of the images not read from the cache: those that passed the network, and those whose rows
            # were copied from entries of the same extractor on other splits or data versions
            "features_extracted_images": sum(len(plans[s].to_extract) for s in extracted),
            "features_reused_images": sum(len(plans[s].reused) for s in filled),
            **engine_record(cached[(extracted or ["train"])[0]][2]),
            # every engine that computed a row of the features, those copied from other entries included
            "feature_engines": sorted({each for _, _, made in cached.values() for each in engines_in(made)}),
            "extraction_ips": images / seconds if seconds else None,  # backbone throughput, traced batches
            "backbone_built": backbone.built,
            **bn_record(cfg, spec, backbone, dataset),
        },
        kept,
    )


def train_frozen(
    cfg: DictConfig, dataset: Dataset, spec: BackboneSpec, backbone: LoadedBackbone, image_size: int
) -> Trained:
    """Cache pooled features of every split and train the head on them. The network is built only if a
    split's features are not cached yet; the assembled model is put together only when asked for."""
    found = cached_features(cfg, dataset, spec, backbone, image_size)
    features, labels, extractor = found.features, found.labels, found.extractor
    n_classes, (n_train, width) = len(dataset.class_names), features["train"].shape
    scale = scale_of(features["train"]) if cfg.head.standardize else None
    seen = {s: (features[s] - scale[0]) / scale[1] for s in ("train", "val")} if scale else features
    head = seeded_head(width, n_train, n_classes, cfg)  # compiled (kept_heads.py)
    started = time.perf_counter()
    history, best_epoch = fit_head(head.model, seen, labels, n_classes, cfg.train, cfg.seed)
    training_s = time.perf_counter() - started
    val_probabilities, fold_check = head_probabilities(head.model, seen["val"]), {}
    if scale is not None:  # fold, then check the folded head on the same validation features
        fold_scale(head.layers[0], *scale)
        folded = head_probabilities(head.model, features["val"])
        fold_check, val_probabilities = check_fold(val_probabilities, folded), folded
    test_probabilities = head_probabilities(head.model, features["test"])
    timings = {**found.timings, **training_record(history, best_epoch, training_s), **fold_check}
    return Trained(
        lambda: assembled(extractor(), head),
        history,
        test_probabilities,
        timings,
        val_probabilities,
        head=head.saved,
        extractor=extractor,
        gradcam_kept=found.gradcam_kept,
    )
