"""Extraction engines: ONNX Runtime and OpenVINO give Keras's features, a wrong export is refused."""

import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from benchmark.errors import BenchmarkError
from benchmark.runs.pipeline import run
from benchmark.train.engines import PARITY_TOLERANCE, choose


def feature_files(cache_dir: Path) -> dict[str, np.ndarray]:
    """The cached features of each split, by split name."""
    found = {}
    for path in (cache_dir / "features").glob("*.npy"):
        split = next(s for s in ("train", "val", "test") if f"-{s}-" in path.name)
        found[split] = np.load(path)
    return found


def test_onnxruntime_and_openvino_compute_kerass_features_from_one_kept_export(tiny_cfg, tmp_path: Path):
    reference = run(tiny_cfg("runtime.engine=tf", f"cache_dir={tmp_path / 'tf_cache'}"))
    assert reference["extraction_engine"] == "tf"
    expected = feature_files(tmp_path / "tf_cache")
    for seed, engine in enumerate(["onnxruntime", "openvino"]):
        # as a sweep cell: the extractor's TensorFlow graph returns Grad-CAM's activations too
        sweep_cell = "+explain.after_sweep_images=2"
        cfg = tiny_cfg(f"runtime.engine={engine}", f"seed={seed}", "force=true", sweep_cell)
        shutil.rmtree(Path(cfg.cache_dir) / "features", ignore_errors=True)
        metrics = run(cfg)
        assert metrics["extraction_engine"] == engine
        assert 0 <= metrics["engine_parity_max_rel"] <= PARITY_TOLERANCE
        # exported by the first, beside the shared extractor; the second reuses that file
        assert (metrics["engine_export_s"] > 0) == (engine == "onnxruntime")
        assert metrics["engine_onnx_writer"] == ("medbench" if engine == "onnxruntime" else None)
        onnx_files = list((Path(cfg.results_dir) / "extractors").glob("*.onnx"))
        assert len(onnx_files) == 1 and (onnx_files[0].with_suffix("") / "config.json").is_file()
        assert [o.name for o in onnxruntime.InferenceSession(onnx_files[0]).get_outputs()] == ["features"]
        got = feature_files(Path(cfg.cache_dir))
        assert set(got) == {"train", "val", "test"}
        for split in got:
            scale = np.abs(expected[split]).max()
            assert np.abs(got[split] - expected[split]).max() <= PARITY_TOLERANCE * scale


def test_an_export_that_does_not_match_keras_is_refused_and_nothing_is_cached(tiny_cfg, tmp_path: Path):
    """The ONNX file of another network (another random init) stands where this extractor's should be:
    the first batch's check catches it, and no features are cached."""
    run(tiny_cfg("runtime.engine=onnxruntime", "backbone.init_seed=7", f"results_dir={tmp_path / 'other'}"))
    other = next((tmp_path / "other" / "extractors").glob("*.onnx"))
    shutil.rmtree(tmp_path / "cache" / "features")
    cfg = tiny_cfg("runtime.engine=onnxruntime", "force=true")
    run(tiny_cfg("runtime.engine=tf"))  # this extractor, saved; then the other network's export beside it
    shutil.rmtree(tmp_path / "cache" / "features")
    extractor = next((Path(cfg.results_dir) / "extractors").glob("*/config.json")).parent
    shutil.copyfile(other, extractor.with_suffix(".onnx"))
    refused = "runtime.engine=onnxruntime: features differ from Keras's by"
    with pytest.raises(BenchmarkError, match=refused) as e:
        run(cfg)
    assert "use runtime.engine=tf" in str(e.value)
    assert not list((tmp_path / "cache" / "features").glob("*.npy"))


def test_auto_exports_only_when_the_images_repay_it():
    assert choose("auto", workload=500, min_workload=2000, onnx_cached=False) == "tf"
    assert choose("auto", workload=5000, min_workload=2000, onnx_cached=False) == "onnxruntime"
    assert choose("auto", workload=10, min_workload=2000, onnx_cached=True) == "onnxruntime"
    assert choose("auto", workload=10**6, min_workload=2000, onnx_cached=True, gpu=True) == "tf"
    assert choose("tf", workload=10**6, min_workload=2000, onnx_cached=True) == "tf"
    with pytest.raises(BenchmarkError, match="runtime.engine=fast is unknown: use one of tf, onnxruntime"):
        choose("fast", 0, 1, False)
