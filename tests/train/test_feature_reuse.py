"""Frozen features are cached per image: a new split, a new label or an added image costs the forward
passes of the images the extractor has not seen, not of the whole dataset."""

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig
from PIL import Image

from backbones.registry import build, get
from benchmark.runs.pipeline import run
from tests.metrics.test_efficiency import class_folders


def extracted_counts(caplog) -> list[str]:
    return [r.getMessage().split(" in ")[0] for r in caplog.records if " images in " in r.getMessage()]


def folder_with_weights(tiny_cfg, tmp_path: Path, seed: int) -> tuple[Path, Callable[..., DictConfig]]:
    """36 images in three class folders (split 70/10/20 by dataset.split_seed) and the config of a run on
    them with a saved MobileNetV2 weights file (trained weights: no BatchNorm recalibration)."""
    keras.utils.set_random_seed(seed)
    weights = tmp_path / "mobilenetv2_no_top.weights.h5"
    build(get("mobilenetv2"), 32, None).save_weights(weights)
    data = class_folders(tmp_path / "lungs", 3, 12)

    def folder(*extra: str) -> DictConfig:
        return tiny_cfg("dataset=folder", f"dataset.path={data}", f"backbone.weights={weights}", *extra,
                        synthetic=False)

    return data, folder


def cold_run_matches(tmp_path: Path, folder: Callable[..., DictConfig], *extra: str) -> dict:
    """The run of `folder(*extra)` again on an empty cache: its metrics, once each of its feature entries
    is checked equal to the warm cache's entry of the same name (the same images)."""
    fresh = run(folder(*extra, f"cache_dir={tmp_path / 'fresh'}", f"results_dir={tmp_path / 'fresh_run'}"))
    for entry in (tmp_path / "fresh" / "features").glob("*.npy"):
        np.testing.assert_allclose(np.load(tmp_path / "cache" / "features" / entry.name), np.load(entry),
                                   rtol=1e-5, atol=1e-5)
    return fresh



def test_a_new_split_seed_and_an_added_image_pass_only_unseen_images_through_the_network(
    tiny_cfg, tmp_path: Path, caplog
):
    data, folder = folder_with_weights(tiny_cfg, tmp_path, 3)

    caplog.set_level(logging.INFO, logger="benchmark.train.features")
    first = run(folder())
    assert first["features_reused_images"] == 0 and first["features_extracted_images"] == 36
    assert extracted_counts(caplog) == [
        "features train: 25 images", "features val: 4 images", "features test: 7 images"]
    caplog.clear()
    reshuffled = run(folder("dataset.split_seed=1"))
    assert reshuffled["dataset_fingerprint"] != first["dataset_fingerprint"]
    assert reshuffled["features_reused_images"] == 36 and reshuffled["features_extracted_images"] == 0
    assert not reshuffled["features_from_cache"]
    assert extracted_counts(caplog) == []  # every image's features came from the first split's entries
    fresh = cold_run_matches(tmp_path, folder, "dataset.split_seed=1")
    assert fresh["features_reused_images"] == 0

    Image.fromarray(np.full((24, 24), 200, np.uint8)).save(data / "c1" / "new_scan.png")
    caplog.clear()
    added = run(folder("dataset.split_seed=1"))  # one more image moves the stratified split: every entry
    assert added["features_reused_images"] == 36 and added["features_extracted_images"] == 1  # is new
    assert extracted_counts(caplog) in (
        [f"features {split}: 1 images"] for split in ("train", "val", "test"))


def test_a_recalibrated_random_init_backbone_reuses_nothing_across_data_versions(tiny_cfg, tmp_path: Path):
    """Its BatchNorm statistics come from the train images, so another split is another extractor."""
    data = class_folders(tmp_path / "lungs", 3, 12)
    for split_seed in (0, 1):
        metrics = run(tiny_cfg("dataset=folder", f"dataset.path={data}", f"dataset.split_seed={split_seed}",
                               synthetic=False))
        assert metrics["bn_recalibrated"] and metrics["features_reused_images"] == 0
        assert not metrics["features_from_cache"]


def test_copied_rows_keep_the_engine_that_computed_them(tiny_cfg, tmp_path: Path):
    """Features extracted by ONNX Runtime, then one image added and the rest copied into a TensorFlow
    run's entries: the run says TensorFlow extracted and both engines computed its features; a new split
    seed then copies every row, from entries of both engines ("mixed")."""
    data, on = folder_with_weights(tiny_cfg, tmp_path, 4)

    def folder(engine: str, *extra: str) -> DictConfig:
        return on(f"runtime.engine={engine}", *extra)

    first = run(folder("onnxruntime"))
    assert first["extraction_engine"] == "onnxruntime" and first["feature_engines"] == ["onnxruntime"]
    Image.fromarray(np.full((24, 24), 90, np.uint8)).save(data / "c2" / "new_scan.png")
    added = run(folder("tf"))
    assert added["features_extracted_images"] == 1 and added["features_reused_images"] == 36
    assert added["extraction_engine"] == "tf" and added["feature_engines"] == ["onnxruntime", "tf"]
    reshuffled = run(folder("tf", "dataset.split_seed=1"))
    assert reshuffled["features_extracted_images"] == 0
    assert reshuffled["feature_engines"] == ["onnxruntime", "tf"]
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "features").glob("*.engine.json")]
    assert any(r["engine"] == "mixed" and r["engines"] == ["onnxruntime", "tf"] for r in records)


def test_a_source_entry_pruned_between_the_plan_and_the_copy_is_planned_again(
    tiny_cfg, tmp_path: Path, monkeypatch, caplog
):
    """`python -m benchmark.cache` removes an entry a run planned to copy rows from before it copies them
    (the run dated it, but other splits' extraction took longer than `unused_days`): the run plans that
    split again and extracts what it can no longer copy, with the same features as a cold cache."""
    from benchmark.cache import entries, remove
    from benchmark.train import frozen
    from benchmark.train.features import plan_features

    _, folder = folder_with_weights(tiny_cfg, tmp_path, 5)
    run(folder())
    pruned: list[str] = []

    def planned_then_pruned(*args):
        plan = plan_features(*args)
        if plan.split == "test" and plan.reused:
            sources = {entry for entry, _ in plan.reused.values()}
            for entry in entries(tmp_path / "cache"):
                if sources & set(entry.paths) and remove(entry, cutoff=time.time() + 1) == "removed":
                    pruned.append(entry.name)
        return plan

    monkeypatch.setattr(frozen, "plan_features", planned_then_pruned)
    caplog.set_level(logging.INFO, logger="benchmark.train.frozen")
    reshuffled = run(folder("dataset.split_seed=1"))
    assert pruned and any("planning features test again" in r.getMessage() for r in caplog.records)
    assert reshuffled["features_extracted_images"] > 0  # the test images it could no longer copy
    monkeypatch.undo()
    cold_run_matches(tmp_path, folder, "dataset.split_seed=1")
