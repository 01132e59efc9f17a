"""One benchmark run: config -> dataset -> backbone -> train -> evaluate -> run directory."""

import logging
import shutil
import traceback
from pathlib import Path

import keras
from omegaconf import DictConfig, OmegaConf

from backbones.registry import BackboneSpec, check_image_size, get
from benchmark import augment, efficiency, plots, rundir
from benchmark.data import Dataset, dataset_name, load_dataset
from benchmark.data.audit import audit
from benchmark.errors import BenchmarkError
from benchmark.evaluate import classification_report, evaluate, predictions_frame
from benchmark.explain import explain
from benchmark.features import split_pixels
from benchmark.files import write_json, write_text
from benchmark.finetune import train_finetune
from benchmark.train import Trained, train_frozen
from benchmark.weights import IMAGENET_UNAVAILABLE, LoadedBackbone, load_backbone, weights_id_of_file

log = logging.getLogger(__name__)
STRATEGIES = {"frozen": train_frozen, "finetune": train_finetune}


def write_outputs(
    stage: Path, cfg: DictConfig, dataset: Dataset, trained: Trained, scores: dict
) -> Path | None:
    """Everything but metrics.json and manifest.json; returns the saved model's path, if saved."""
    title = f"{cfg.backbone.name} on {dataset.name} (seed {cfg.seed})"
    write_text(stage / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_text(stage / "history.csv", trained.history.to_csv(index=False))
    test = dataset.splits["test"]
    y_test = test.labels
    table = predictions_frame(test.ids, y_test, trained.test_probabilities, list(dataset.class_names))
    write_text(stage / "predictions.csv", table.to_csv(index=False))
    write_text(
        stage / "classification_report.txt",
        classification_report(y_test, trained.test_probabilities, list(dataset.class_names)),
    )
    plots.confusion_matrix_figure(
        scores["confusion_matrix"], list(dataset.class_names), title, stage / "confusion_matrix.png"
    )
    plots.curves_figure(trained.history, title, stage / "curves.png", trained.timings["best_epoch"])
    plots.coverage_figure(scores["coverage_curve"], title, stage / "coverage.png")
    if not cfg.train.save_model:
        return None
    trained.model.save(stage / "model.keras")
    return stage / "model.keras"


def manifest(cfg: DictConfig, dataset: Dataset, weights_used: str, audit_record: dict, started: str) -> dict:
    return {
        "versions": rundir.versions(),
        "git_commit": rundir.git_commit(),
        "machine": rundir.machine(),
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "synthetic": dataset.synthetic,
            "classes": list(dataset.class_names),
            **audit_record,
        },
        "seed": cfg.seed,
        "weights_used": weights_used,
        "started": started,
        "finished": rundir.now(),
    }


def still_valid(cfg: DictConfig, run_dir: Path, dataset: Dataset) -> bool:
    """A complete run counts only if its data and weights file are still what it was trained on."""
    previous = rundir.read_metrics(run_dir)
    now = dataset.fingerprint
    if previous.get("dataset_fingerprint") not in (None, now):
        log.warning("%s was trained on other data (fingerprint %s, now %s): running it again",
                    run_dir, previous["dataset_fingerprint"], now)
        return False
    if previous.get("weights_used") == IMAGENET_UNAVAILABLE:
        log.warning("%s used random weights because ImageNet was unavailable; force=true re-runs it", run_dir)
    weights = cfg.backbone.weights
    if weights not in (None, "imagenet") and previous.get("weights_id") != weights_id_of_file(Path(weights)):
        log.warning("%s was trained from another version of %s: running it again", run_dir, weights)
        return False
    return True


def validate(cfg: DictConfig) -> tuple[BackboneSpec, int]:
    """Everything checkable before work starts: backbone, input size, strategy and augmentation."""
    spec = get(cfg.backbone.name)
    image_size = int(cfg.image_size or spec.default_size)
    check_image_size(spec, image_size)
    if cfg.train.mode not in STRATEGIES:
        raise BenchmarkError(f"train.mode={cfg.train.mode!r} is unknown: use one of {', '.join(STRATEGIES)}")
    if cfg.train.mode == "frozen" and augment.is_active(cfg.augment):
        raise BenchmarkError(
            f"augment={cfg.augment.name} needs train=finetune: frozen mode trains on cached features, "
            "which cannot be augmented (use augment=none, or train=finetune)"
        )
    return spec, image_size


def train_and_evaluate(
    cfg: DictConfig, spec: BackboneSpec, image_size: int, backbone: LoadedBackbone, dataset: Dataset,
    stage: Path,
) -> dict:
    """Training, test metrics, Grad-CAM and efficiency; every file of the run but metrics.json."""
    started = rundir.now()
    audit_record = audit(dataset)
    trained = STRATEGIES[cfg.train.mode](cfg, dataset, spec, backbone, image_size)
    test = dataset.splits["test"]
    classes = list(dataset.class_names)
    scores = evaluate(test.labels, trained.test_probabilities, classes, cfg.evaluate)
    model_file = write_outputs(stage, cfg, dataset, trained, scores)
    test_pixels = split_pixels(dataset, "test", image_size, Path(cfg.cache_dir))
    scores |= explain(trained.model, test_pixels, test.labels, trained.test_probabilities, classes, spec.name,
                      cfg.explain.n_images, cfg.explain.seed, stage / "gradcam.png")
    write_json(stage / "manifest.json", manifest(cfg, dataset, backbone.weights_used, audit_record, started))
    costs = efficiency.measure(trained.model, image_size, model_file, cfg.efficiency)
    return {
        "backbone": spec.name, "dataset": dataset.name, "classes": classes,
        "synthetic_data": dataset.synthetic, "weights_used": backbone.weights_used,
        "train_mode": cfg.train.mode, "seed": cfg.seed, "image_size": image_size,
        "config_hash": rundir.config_hash(cfg), "dataset_fingerprint": dataset.fingerprint,
        "weights_id": backbone.weights_id,
        "split_sizes": {name: len(split) for name, split in dataset.splits.items()},
        **scores, **trained.timings, **costs,
    }


def run(cfg: DictConfig) -> dict:
    """Train and evaluate one backbone; returns metrics.json's content (skips a completed run)."""
    spec, image_size = validate(cfg)
    run_dir = rundir.run_directory(cfg, dataset_name(cfg.dataset))
    dataset = None  # loaded (and content-hashed) once: for the resume check, or after the weights below
    if rundir.is_complete(run_dir) and not cfg.force:
        dataset = load_dataset(cfg.dataset, Path(cfg.data_dir))
        if still_valid(cfg, run_dir, dataset):
            log.info("skip: %s is complete (force=true re-runs it)", run_dir)
            return rundir.read_metrics(run_dir)
    keras.backend.clear_session()  # a sweep runs many cells in one process: start each from a clean slate
    with efficiency.peak_memory() as memory:
        # weights, then data: bad input stops the run before anything is written
        backbone = load_backbone(spec, image_size, cfg.backbone)
        dataset = dataset or load_dataset(cfg.dataset, Path(cfg.data_dir))
        stage = rundir.staging_directory(run_dir)
        try:
            metrics = train_and_evaluate(cfg, spec, image_size, backbone, dataset, stage)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    metrics |= memory
    write_json(stage / "metrics.json", metrics)  # last: its presence marks the run complete
    rundir.publish(stage, run_dir)
    log.info("%s: accuracy %.4f [%.4f, %.4f], macro-AUROC %.4f -> %s", spec.name, metrics["accuracy"],
             metrics["accuracy_ci_low"], metrics["accuracy_ci_high"], metrics["macro_auroc"], run_dir)
    return metrics


def record_failure(cfg: DictConfig, error: BaseException) -> Path | None:
    """Write `failed.json` into the cell's run directory, unless that run is complete (never touch it)."""
    try:
        run_dir = rundir.run_directory(cfg, dataset_name(cfg.dataset))
    except Exception:  # the config itself is unusable: nothing to file the failure under
        return None
    if rundir.is_complete(run_dir):
        return None
    write_json(run_dir / "failed.json", {
        "backbone": cfg.backbone.name, "dataset": run_dir.parts[-3], "seed": cfg.seed,
        "config_hash": rundir.config_hash(cfg), "error_type": type(error).__name__,
        "error": str(error), "traceback": traceback.format_exc(), "time": rundir.now(),
    })
    return run_dir
