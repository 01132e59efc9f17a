"""Whole runs in-process (Hydra compose -> run), on the real tiny synthetic dataset."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import backbones.preprocess  # noqa: F401  registers the Preprocess layer for loading model.keras
from backbones.registry import build, get
from benchmark import cli
from benchmark.data.images import decode_file
from benchmark.errors import BenchmarkError
from benchmark.runs.pipeline import run

NOT_RESULTS = {  # timings, cache provenance and paths: they differ between equal runs
    "feature_extraction_s",
    "training_s",
    "run_s",
    "extractor_ready_s",
    "extractor_path",  # absolute: where this results folder is
    "latency_ms",
    "throughput_ips",
    "peak_memory_mb",
    "peak_gpu_memory_mb",
    "features_from_cache",
    "features_extracted_images",
    "features_reused_images",
    "efficiency_from_cache",
    "backbone_built",
    "model_size_mb",
}


def run_dir_of(metrics: dict, cfg) -> Path:
    return (
        Path(cfg.results_dir)
        / "runs"
        / metrics["dataset"]
        / metrics["backbone"]
        / f"seed{metrics['seed']}-{metrics['config_hash']}"
    )


@pytest.fixture
def warm(saved_run, tmp_path) -> Path:
    """tmp_path holding a copy of the session's finished tiny run with its caches: tiny_cfg() there is
    that run's configuration, so it is complete and its features are cached."""
    shutil.copytree(saved_run[0].parents[4], tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_assembled_model_equals_the_cached_feature_path(saved_run):
    """The saved model (the shared extractor file + the run's head.keras, from raw pixels) must predict
    what the cached path predicted."""
    run_dir, data_root = saved_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not (run_dir / "model.keras").exists() and (run_dir / "head.keras").is_file()
    assert metrics["extractor_file"].startswith("extractors/mobilenetv2-32px-")
    extractor = run_dir.parents[3] / metrics["extractor_file"]  # a Keras model saved unzipped, a folder
    assert (extractor / "config.json").is_file() and (extractor / "model.weights.h5").is_file()
    assert metrics["model_size_mb"] > (extractor / "model.weights.h5").stat().st_size / 1e6
    assert getattr(keras.models.load_model(run_dir / "head.keras"), "optimizer", None) is None  # no Adam
    model = cli.load_model(run_dir)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    pixels = np.stack([decode_file(data_root / f, metrics["image_size"]) for f in predictions["file"]])
    from_pixels = model.predict(pixels.astype(np.float32), verbose=0)
    cached = predictions[[f"prob_{c}" for c in metrics["classes"]]].to_numpy()
    np.testing.assert_allclose(from_pixels, cached, atol=1e-4)
    assert len(predictions) == metrics["n_test"] and metrics["bn_recalibrated"] is True


def test_same_seed_same_metrics_and_a_new_seed_reuses_the_features(tiny_cfg, warm):
    first = run(tiny_cfg())  # complete: read back
    again = run(tiny_cfg(f"results_dir={warm / 'again'}"))  # a fresh run directory, same caches
    for key in first.keys() - NOT_RESULTS:  # compared as JSON: NaN (an undefined rate) equals NaN there
        assert json.dumps(first[key], sort_keys=True) == json.dumps(again[key], sort_keys=True), key
    assert again["features_from_cache"] is True
    other = run(tiny_cfg("seed=1", "explain.n_images=0"))
    assert other["features_from_cache"] is True  # seeds share the frozen features
    assert other["efficiency_from_cache"] is True and other["backbone_built"] is False  # and everything else
    assert other["config_hash"] == first["config_hash"]
    assert other["log_loss"] != first["log_loss"]  # but the head is initialised and shuffled differently


def test_an_extractor_saved_as_a_keras_file_by_an_earlier_version_is_used(tiny_cfg, warm):
    """A results folder from before extractors were saved unzipped: a new run of that backbone reads the
    `.keras` file instead of building and storing the backbone a second time."""
    folder = next((warm / "results" / "extractors").glob("*/config.json")).parent
    keras.models.load_model(folder).save(folder.with_suffix(".keras"))
    shutil.rmtree(folder)
    shutil.rmtree(warm / "cache" / "features")  # so the run needs the network
    metrics = run(tiny_cfg("seed=1"))
    assert metrics["extractor_file"] == f"extractors/{folder.name}.keras" and not folder.exists()
    assert metrics["backbone_built"] is False and cli.load_model(run_dir_of(metrics, tiny_cfg())) is not None


def test_an_extractor_folder_copied_without_its_weights_is_reported_missing(tiny_cfg, warm):
    """A copy that skipped `*.h5` (the repository's own .gitignore does) leaves config.json alone: the
    user is told the extractor is missing and how to mend it, not Keras's error about a weights file."""
    metrics = run(tiny_cfg())  # complete: read back
    run_dir = run_dir_of(metrics, tiny_cfg())
    moved = json.loads((run_dir / "metrics.json").read_text()) | {"extractor_path": "/elsewhere/extractor"}
    (run_dir / "metrics.json").write_text(json.dumps(moved))  # copied to another machine: only the relative
    (warm / "results" / metrics["extractor_file"] / "model.weights.h5").unlink()
    with pytest.raises(BenchmarkError, match="extractor .* is missing .* copy that folder too"):
        cli.load_model(run_dir)


def test_a_complete_run_is_skipped_and_force_reruns_it(tiny_cfg, warm, caplog):
    cfg = tiny_cfg()
    metrics = run(cfg)
    written = (run_dir_of(metrics, cfg) / "metrics.json").stat().st_mtime_ns
    read_back = json.loads((run_dir_of(metrics, cfg) / "metrics.json").read_text())
    assert json.dumps(run(cfg), sort_keys=True) == json.dumps(read_back, sort_keys=True)  # NaN-safe
    assert (run_dir_of(metrics, cfg) / "metrics.json").stat().st_mtime_ns == written
    for added in ("external/siteB", "exports/onnx"):  # what benchmark.evaluate and benchmark.export add
        (run_dir_of(metrics, cfg) / added).mkdir(parents=True)
    run(tiny_cfg("force=true"))
    assert (run_dir_of(metrics, cfg) / "metrics.json").stat().st_mtime_ns != written
    (warned,) = [r.getMessage() for r in caplog.records if "is trained again" in r.getMessage()]
    assert "once the new run is published, exports/onnx, external/siteB (made from the old model)" in warned
    leftovers = [p.name for p in run_dir_of(metrics, cfg).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_complete_run_whose_metrics_file_is_cut_short_is_run_again(tiny_cfg, warm, caplog):
    cfg = tiny_cfg()
    (run_dir,) = (warm / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*")
    metrics_file = run_dir / "metrics.json"
    metrics_file.write_text(metrics_file.read_text()[:300])  # a full disk, a broken copy
    metrics = run(cfg)
    assert json.loads(metrics_file.read_text())["config_hash"] == metrics["config_hash"]
    warned = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warned) == 1 and str(metrics_file) in warned[0] and "running that run again" in warned[0]
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]


def test_weights_file_saved_by_the_test_is_loaded(tiny_cfg, tmp_path):
    keras.utils.set_random_seed(123)
    base = build(get("mobilenetv2"), 32, None)
    path = tmp_path / "mobilenetv2_no_top.weights.h5"
    base.save_weights(path)
    metrics = run(tiny_cfg(f"backbone.weights={path}"))
    assert metrics["weights_used"].startswith("file:mobilenetv2_no_top.weights.h5")
    assert metrics["bn_recalibrated"] is False  # trained weights keep their own BatchNorm statistics
    with pytest.raises(BenchmarkError, match="does not fit resnet50"):
        run(tiny_cfg(f"backbone.weights={path}", "backbone=resnet50"))


def test_a_keras2_weights_file_with_its_own_preprocessing_is_recorded_and_labelled(tiny_cfg, tmp_path):
    """RadImageNet's case end to end: a Keras 2 no-top .h5 plus backbone.preprocess; the run, its model
    card and the leaderboard's weights column say which file and which preprocessing."""
    from benchmark.report.build import build_report
    from tests.backbones.test_weights import keras2_h5
    from tests.report.test_report import report_config

    keras.utils.set_random_seed(5)
    path = keras2_h5(build(get("mobilenetv2"), 32, None), tmp_path / "domain_notop.h5")
    metrics = run(tiny_cfg(f"backbone.weights={path}", "backbone.preprocess=unit"))
    assert metrics["weights_used"].startswith("file:domain_notop.h5 (sha256 ")
    assert metrics["preprocess_override"] == "unit"
    assert metrics["preprocess"].startswith("unit (backbone.preprocess override")
    card = (run_dir_of(metrics, tiny_cfg()) / "MODEL_CARD.md").read_text()
    assert "preprocessing unit (backbone.preprocess override; mobilenetv2's own is tf)" in card
    own = run(tiny_cfg(f"backbone.weights={path}"))
    assert own["config_hash"] != metrics["config_hash"] and own["preprocess_override"] is None
    leaderboard = build_report(report_config(tmp_path / "results")).read_text()
    assert f"{metrics['weights_used']}, preprocess unit" in leaderboard


def test_missing_weights_file_is_a_user_error(tiny_cfg, tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist"):
        run(tiny_cfg(f"backbone.weights={tmp_path / 'nope.weights.h5'}"))


def test_equal_experiments_share_a_hash_and_reporting_options_do_not_split_them(tiny_cfg, tmp_path):
    from benchmark.runs.identity import resolve

    def config_hash(cfg):
        return resolve(cfg).config_hash

    base = config_hash(tiny_cfg("dataset=folder", f"dataset.path={tmp_path}", synthetic=False))
    reporting = ("explain.n_images=8", "efficiency.latency_runs=50", "train.save_model=false",
                 "train.run_eagerly=true")
    same = tiny_cfg("dataset=folder", f"dataset.path={tmp_path}/", *reporting, synthetic=False)
    assert config_hash(same) == base
    assert config_hash(tiny_cfg("image_size=null")) == config_hash(tiny_cfg("image_size=224"))
    assert config_hash(tiny_cfg("train.lr=0.01")) != config_hash(tiny_cfg())


def test_a_complete_run_reruns_when_its_data_changed(tiny_cfg, tmp_path):
    from PIL import Image

    data = tmp_path / "lungs"
    rng = np.random.default_rng(0)
    for klass in ("a", "b"):
        (data / klass).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(data / klass / f"{i}.png")
    folder = ("dataset=folder", f"dataset.path={data}")
    first = run(tiny_cfg(*folder, synthetic=False))
    skipped = run(tiny_cfg(*folder, synthetic=False))  # unchanged data: skipped, read back (NaN-safe compare)
    assert json.dumps(skipped, sort_keys=True) == json.dumps(first, sort_keys=True)
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(data / "a" / "new.png")
    again = run(tiny_cfg(*folder, synthetic=False))
    assert again["dataset_fingerprint"] != first["dataset_fingerprint"]
    assert again["config_hash"] == first["config_hash"]
