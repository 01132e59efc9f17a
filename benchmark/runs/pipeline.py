"""One benchmark run: identity -> dataset -> backbone -> strategy -> evaluate -> run directory."""

import logging
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path

import keras
import tensorflow as tf
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from backbones.weights import LoadedBackbone, load_backbone
from benchmark.data import Dataset
from benchmark.data.audit import reported_findings
from benchmark.data.groups import splits_frame
from benchmark.data.pixels import DecodedRows, split_pixels
from benchmark.data.splits import is_test_only
from benchmark.errors import BenchmarkError
from benchmark.figures import background
from benchmark.figures import run as run_figures
from benchmark.figures.audit import audit_figure
from benchmark.files import mark_used, read_json, size_bytes, write_json, write_text
from benchmark.metrics import efficiency
from benchmark.metrics.calibration import calibration_record
from benchmark.metrics.evaluate import Settings, classification_report, evaluate
from benchmark.metrics.operating_points import operating_points_record
from benchmark.metrics.predictions import predictions_frame
from benchmark.metrics.scores import macro_auroc
from benchmark.runs import layout, progress, provenance, resume, tracking
from benchmark.runs.identity import ON_CACHED_FEATURES, WITHOUT_GRADCAM, RunIdentity, resolve
from benchmark.runs.model_card import model_card, with_interval
from benchmark.runs.settings import check_model_and_settings
from benchmark.runs.slate import clean_slate
from benchmark.saliency.explain import explain
from benchmark.saliency.pool import Pooled, keep_pool, pool_path, pooled_images, read_pool
from benchmark.train import STRATEGIES, augment, engines
from benchmark.train.shared import Trained

log = logging.getLogger(__name__)
AUDIT_FIGURE_SIZE = 160  # side of each image in audit.png


def save_model(stage: Path, cfg: DictConfig, trained: Trained) -> dict:
    """model.keras; or, for a frozen run, head.keras and the name of the extractor its backbone's
    runs share (made now if this results folder has none yet). Its record for metrics.json."""
    if trained.extractor is None:
        trained.model.save(stage / "model.keras")  # the staging folder is published atomically as a whole
        return {"model_size_mb": size_bytes(stage / "model.keras") / 1e6}
    shared = trained.extractor.path
    if not shared.exists():  # this results folder has none yet (features came from the cache): make it
        trained.extractor()
    trained.head.save(stage / "head.keras")
    return {  # relative: the results folder may move; absolute: a run folder copied out of it still loads
        "model_size_mb": (size_bytes(stage / "head.keras") + size_bytes(shared)) / 1e6,
        "extractor_file": shared.relative_to(Path(cfg.results_dir)).as_posix(),
        "extractor_path": str(shared.resolve()),
    }


def write_outputs(
    stage: Path, cfg: DictConfig, run: RunIdentity, dataset: Dataset, trained: Trained, scores: dict,
    figures: list[Future],
) -> dict:
    """Everything but metrics.json and manifest.json; returns what metrics.json says about the saved model.
    The run's figures are drawn by `background.draw` (`figures`: done, or being drawn by a sweep's worker)."""
    title = f"{run.spec.name} on {run.dataset} (seed {run.seed})"
    classes = list(dataset.class_names)
    test = dataset.splits["test"]
    write_text(stage / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_text(stage / "splits.csv", splits_frame(dataset.splits, classes).to_csv(index=False))
    pairs = dataset.records.get("audit_pairs")
    if pairs is not None and len(pairs):
        write_text(stage / "audit.csv", pairs.to_csv(index=False))
        audit_figure(pairs, lambda image_id: dataset.decode(image_id, AUDIT_FIGURE_SIZE), stage / "audit.png")
    write_text(stage / "history.csv", trained.history.to_csv(index=False))
    table = predictions_frame(test.ids, trained.test_probabilities, classes, labels=test.labels)
    write_text(stage / "predictions.csv", table.to_csv(index=False))
    if trained.val_probabilities is not None:  # what validation-side choices (calibration, thresholds) use
        val = dataset.splits["val"]
        table = predictions_frame(val.ids, trained.val_probabilities, classes, labels=val.labels)
        write_text(stage / "val_predictions.csv", table.to_csv(index=False))
    write_text(
        stage / "classification_report.txt",
        classification_report(test.labels, trained.test_probabilities, classes),
    )
    figures += [
        background.draw(
            run_figures.confusion_matrix_figure, scores["confusion_matrix"], classes, title,
            stage / "confusion_matrix.png",
        ),
        background.draw(
            run_figures.curves_figure, trained.history, title, stage / "curves.png",
            trained.timings["best_epoch"],
        ),
        background.draw(run_figures.coverage_figure, scores["coverage_curve"], title, stage / "coverage.png"),
    ]
    return save_model(stage, cfg, trained) if cfg.train.save_model else {"model_size_mb": None}


def data_record(dataset: Dataset) -> dict:
    """What loading found, for manifest.json: counts per split, class and group; skipped files; the
    duplicate audit; how pixels were decoded."""
    return {
        "class_counts": dataset.class_counts(),
        "split_by": dataset.group_name or "image",
        "group_counts": dataset.group_counts(),
        "skipped_images": dataset.records.get("skipped", []),
        "audit": dataset.records.get("audit", {}),
        "decoding": dataset.records.get("decoding", {}),
    }


def split_summary(dataset: Dataset) -> dict:
    """The facts about the data the leaderboard shows (read from metrics.json)."""
    audit = dataset.records.get("audit", {})
    groups = {name: set(split.groups) for name, split in dataset.splits.items()} if dataset.group_name else {}
    every = [group for found in groups.values() for group in found]
    return {
        "split_sizes": {name: len(split) for name, split in dataset.splits.items()},
        "split_by": dataset.group_name or "image",
        "split_from": dataset.records.get("split_from"),  # folders | official | dataset.split
        "split_groups": {name: len(found) for name, found in groups.items()} if groups else None,
        "n_groups": len(set(every)) if groups else None,
        # pre-split folders with dataset.group_overlap=warn: these patients leak between splits
        "groups_in_several_splits": sum(n > 1 for n in Counter(every).values()) if groups else None,
        "skipped_images": len(dataset.records.get("skipped", [])),
        **reported_findings(audit),
    }


def manifest(cfg: DictConfig, dataset: Dataset, weights_used: str, started: str) -> dict:
    return {
        "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "machine": provenance.machine(),
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "synthetic": dataset.synthetic,
            "classes": list(dataset.class_names),
            **data_record(dataset),
        },
        "seed": cfg.seed,
        "weights_used": weights_used,
        "started": started,
        "finished": provenance.now(),
    }


def validate(cfg: DictConfig) -> RunIdentity:
    """Everything checkable before work starts: backbone, input size, strategy, the train.*/head.* numbers
    (also checked before TensorFlow is imported, by `python -m benchmark`) and augmentation."""
    run = check_model_and_settings(cfg)  # an Optuna trial's values too
    layout.check_writable(Path(cfg.results_dir))
    if cfg.train.mode not in STRATEGIES:
        raise BenchmarkError(f"train.mode={cfg.train.mode!r} is unknown: use one of {', '.join(STRATEGIES)}")
    if cfg.get("logger"):
        tracking.check_installed()
    engines.choose(cfg.runtime.engine, 0, 1, False)  # an unknown or uninstalled engine, before any work
    if is_test_only(cfg.dataset.get("split") or []):
        raise BenchmarkError(
            "dataset.split=[0,0,1] puts every image in test, which only scoring can use: give train/val "
            "fractions (e.g. dataset.split=[0.7,0.1,0.2]), or score a finished run on this data with "
            "python -m benchmark.evaluate"
        )
    if cfg.train.mode in ON_CACHED_FEATURES and augment.is_active(cfg.augment):
        raise BenchmarkError(
            f"augment={cfg.augment.name} needs train=finetune: train={cfg.train.mode} uses cached features, "
            "which cannot be augmented (use augment=none, or train=finetune)"
        )
    return run


def keep_gradcam_pool(
    cfg: DictConfig, run: RunIdentity, dataset: Dataset, trained: Trained, load: bool = False
) -> Path | None:
    """The file of the activations the Grad-CAM of any seed of this frozen backbone needs (saliency/pool.py),
    kept now if missing, so those maps never rebuild the network; None where there is no pool: not a
    frozen run, a layer not followed by pooling alone, or (unless `load`) the network not in memory."""
    extractor = trained.extractor
    if extractor is None or cfg.train.mode in WITHOUT_GRADCAM:
        return None
    test, layer = dataset.splits["test"], run.spec.last_conv_layer
    n_images, seed = pooled_images(cfg.explain), int(cfg.explain.seed)
    cache_dir = Path(cfg.cache_dir)
    path = pool_path(cache_dir, extractor.path, dataset.fingerprint, test.ids, layer, n_images, seed)
    mark_used(path)  # before the check: `python -m benchmark.cache` keeps it
    if path.is_file():
        return path
    if not (load or extractor.in_memory()):
        return None
    pixels = DecodedRows(dataset, "test", run.image_size)  # the pool's images only
    started = time.perf_counter()
    if not keep_pool(extractor(), layer, pixels, test.labels, n_images, seed, path, trained.gradcam_kept):
        return None
    log.info("grad-cam pool of %s kept in %.1fs: %s", run.spec.name, time.perf_counter() - started, path)
    return path


def explained(cfg: DictConfig, run: RunIdentity, dataset: Dataset, trained: Trained) -> keras.Model | Pooled:
    """What a run's own Grad-CAM differentiates: a frozen run's pool and its head where the pool applies
    (the same maps as the gradient path, which traced a gradient graph through the backbone: DenseNet121's
    Grad-CAM 7.7-9.0 s -> 1.4-1.6 s, pool included), else the model."""
    path = keep_gradcam_pool(cfg, run, dataset, trained, load=True)
    return Pooled(read_pool(path), trained.head) if path else trained.model


def validation_choices(cfg: DictConfig, dataset: Dataset, trained: Trained) -> dict:
    """Temperature scaling and operating points: fitted on the validation split, measured on test."""
    val, test = dataset.splits["val"], dataset.splits["test"]
    args = (val.labels, trained.val_probabilities, test.labels, trained.test_probabilities)
    return {
        "calibration": calibration_record(*args, cfg.evaluate.ece_bins),
        "operating_points": operating_points_record(
            *args, list(dataset.class_names), cfg.evaluate.target_sensitivity
        ),
    }


def train_and_evaluate(
    cfg: DictConfig, run: RunIdentity, backbone: LoadedBackbone, dataset: Dataset, stage: Path,
    figures: list[Future],
) -> dict:
    """Training, test metrics, Grad-CAM and efficiency; every file of the run but metrics.json."""
    started = provenance.now()
    trained = STRATEGIES[cfg.train.mode](cfg, dataset, run.spec, backbone, run.image_size)
    test = dataset.splits["test"]
    classes = list(dataset.class_names)
    scores = evaluate(
        test.labels,
        trained.test_probabilities,
        classes,
        Settings.from_config(cfg.evaluate),
        groups=test.groups,
    )
    if trained.val_probabilities is not None:  # choices made on validation, measured on test
        scores |= validation_choices(cfg, dataset, trained)
        scores["val_macro_auroc"] = macro_auroc(dataset.splits["val"].labels, trained.val_probabilities)
    saved = write_outputs(stage, cfg, run, dataset, trained, scores, figures)
    if cfg.explain.n_images and cfg.train.mode in WITHOUT_GRADCAM:
        scores["gradcam"] = f"not applicable to train={cfg.train.mode}"
    elif cfg.explain.n_images:  # in a sweep: 0 here, once per row after it (report/after_sweep.py)
        scores |= explain(
            explained(cfg, run, dataset, trained),
            split_pixels(dataset, "test", run.image_size, Path(cfg.cache_dir)),
            test.labels,
            trained.test_probabilities,
            classes,
            run.spec.name,
            cfg.explain.n_images,
            cfg.explain.seed,
            stage / "gradcam.png",
            shown_as=run.run_dir / "gradcam.png",
        )
    elif cfg.explain.get("after_sweep_images"):
        keep_gradcam_pool(cfg, run, dataset, trained)
    write_json(stage / "manifest.json", manifest(cfg, dataset, backbone.weights_used, started))
    threads = tf.config.threading.get_intra_op_parallelism_threads()  # 0: all cores (runs/threads.py)
    # the same cost for every seed; the head's size follows the classes and a kNN vote's train images
    seed_free = (run.spec.name, cfg.train.mode, OmegaConf.to_container(cfg.head), threads, trained.cost_key)
    same_batch = cfg.efficiency.throughput_batch == cfg.train.batch_size  # extraction timed that batch size
    by_keras = trained.timings.get("extraction_engine", "tf") == "tf"  # the Keras model's cost is reported
    measured = trained.timings.get("extraction_ips") if same_batch and by_keras else None
    costs = saved | efficiency.measure(
        lambda: trained.model,
        run.image_size,
        saved["model_size_mb"],
        cfg.efficiency,
        seed_free,
        Path(cfg.cache_dir),
        measured,
        trained.forward,
    )
    return {
        "backbone": run.spec.name,
        "dataset": run.dataset,
        "classes": classes,
        "synthetic_data": dataset.synthetic,
        "weights_used": backbone.weights_used,
        "preprocess": run.spec.preprocess_label,
        "preprocess_override": run.spec.preprocess,  # null: the backbone's own preprocess_input
        "train_mode": cfg.train.mode,
        "seed": run.seed,
        "image_size": run.image_size,
        "config_hash": run.config_hash,
        "experiment": provenance.preset(),  # recorded beside the hash, never in it: presets name configs
        "dataset_fingerprint": dataset.fingerprint,
        "weights_id": backbone.weights_id,
        "tf_threads": threads,
        **split_summary(dataset),
        **scores,
        **trained.timings,
        **costs,
    }


def run(cfg: DictConfig, check: resume.Check | None = None) -> dict:
    """Train and evaluate one backbone; returns metrics.json's content (skips a completed run, also one
    another run publishes while this one waits for it). `check`: the caller's own resume check, which
    found the run's directory complete but out of date; the run is then not checked (nor its data loaded)
    again."""
    identity = validate(cfg)
    if check is None:  # the dataset is loaded (and content-hashed) once: here, or after the weights below
        check = resume.completed(cfg, identity)
        if check.done is not None:
            return check.done
    layout.warn_replaced(identity.run_dir)
    # A sweep runs many cells in one process: start each from a clean slate, the previous cell's backbone
    # released (one garbage collection: a second one cost 0.22 s a cell for nothing).
    clean_slate()
    started, cell = time.perf_counter(), progress.current_cell(cfg)
    with efficiency.peak_memory() as memory:
        # weights, then data: bad input stops the run before anything is written
        backbone = load_backbone(identity.spec, identity.image_size, cfg.backbone)
        dataset = check.dataset or resume.load(cfg)
        lock, waited_s = layout.lock_run(identity.run_dir)  # held until the run is published, or has failed
        try:
            done = resume.published_meanwhile(cfg, identity, dataset, check.stamp)
            if done is not None:
                layout.unlock_run(lock, identity.run_dir)
                return done
            metrics, stage, figures = staged(cfg, identity, backbone, dataset)
        except BaseException:
            layout.unlock_run(lock, identity.run_dir)
            raise
    try:
        # the whole cell, in this process, less any wait for another run's lock
        metrics |= memory | {"run_s": time.perf_counter() - started - waited_s}
        publish = partial(publish_run, cfg, identity, stage, metrics, cell=cell)
        background.then(figures, partial(then_unlock, lock, identity.run_dir, publish))
    except BaseException:  # interrupted before the publishing was handed on: nothing else releases it
        shutil.rmtree(stage, ignore_errors=True)
        layout.unlock_run(lock, identity.run_dir)
        raise
    return metrics


def staged(
    cfg: DictConfig, identity: RunIdentity, backbone: LoadedBackbone, dataset: Dataset
) -> tuple[dict, Path, list[Future]]:
    """The run trained into a fresh staging folder (removed if it fails): (metrics, the folder, its
    figures being drawn)."""
    stage, figures = layout.staging_directory(identity.run_dir), []
    try:
        return train_and_evaluate(cfg, identity, backbone, dataset, stage, figures), stage, figures
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def then_unlock(
    lock: FileLock, run_dir: Path, finish: Callable[[list[Future]], None], figures: list[Future]
) -> None:
    """`finish(figures)` (publish_run), then the run's lock released: published or failed, its work is over
    (in a sweep, on the figure worker's result thread)."""
    try:
        finish(figures)
    finally:
        layout.unlock_run(lock, run_dir)


def publish_run(
    cfg: DictConfig, identity: RunIdentity, stage: Path, metrics: dict, figures: list[Future], cell: str
) -> None:
    """Complete the staged run once its figures are drawn (in a sweep, on the figure worker's result
    thread while the next cell trains): model card, metrics.json last, then the folder moved into place.
    A figure the worker failed to draw fails the cell as any error would. `cell`: its name in the sweep,
    taken while it ran (progress.current_cell), for the FAILED line."""
    try:
        for figure in figures:
            figure.result()  # raises the worker's error
        write_text(stage / "MODEL_CARD.md", model_card(metrics, read_json(stage / "manifest.json")))
        write_json(stage / "metrics.json", metrics)  # last: its presence marks the run complete
        layout.publish(stage, identity.run_dir)
    except Exception as error:
        shutil.rmtree(stage, ignore_errors=True)
        if not background.drawing():  # finished within its own run: the caller reports the error
            raise
        record_failure(cfg, error)  # finished beside a later cell: this cell failed, the sweep goes on
        log.error("cell %s FAILED: %s", cell, error)
        progress.FAILED.append(cell)  # its marker said done: the sweep's exit status must not
        return
    if cfg.get("logger"):
        tracking.track(cfg, identity.dataset, identity.run_dir, metrics)
    log.info(
        "%s: accuracy %s, macro-AUROC %s -> %s",  # "(no CI)" where there is none, as the model card says
        identity.spec.name,
        with_interval(metrics, "accuracy", 4),
        with_interval(metrics, "macro_auroc", 4),
        identity.run_dir,
    )


def record_failure(cfg: DictConfig, error: BaseException, study: str | None = None) -> Path | None:
    """Write `failed.json` into the cell's run directory, unless that run is complete (never touch it).
    `study`: a search cell's study, so that the study finishing later removes the record (search.py);
    with the number of trials the cell asked for, which a study finished with fewer does not make good."""
    try:
        identity = resolve(cfg)
    except Exception:  # the config itself is unusable: nothing to file the failure under
        return None
    if layout.is_complete(identity.run_dir):
        return None
    write_json(
        identity.run_dir / "failed.json",
        {
            "backbone": identity.spec.name,
            "dataset": identity.dataset,
            "seed": identity.seed,
            "config_hash": identity.config_hash,
            "error_type": type(error).__name__,
            "error": str(error),
            "traceback": traceback.format_exc(),
            "time": provenance.now(),
            **({"study": study, "n_trials": cfg.hparams_search.n_trials} if study else {}),
        },
    )
    return identity.run_dir
