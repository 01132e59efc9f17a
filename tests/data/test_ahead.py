"""The dataset prepared in a spawned process: the run's own load then finds it ready, or reports the error."""

import logging
from pathlib import Path

import pytest

from benchmark.data import ahead, load_dataset
from benchmark.errors import BenchmarkError


def test_the_run_loads_what_the_spawned_process_prepared(tiny_cfg, tmp_path: Path, caplog):
    cfg = tiny_cfg()
    assert ahead.worth_preparing(cfg)  # no synthetic tree yet
    process = ahead.start(cfg)
    ahead.wait(process)
    assert process.exitcode == 0 and not ahead.worth_preparing(cfg)
    with caplog.at_level(logging.INFO):
        prepared = load_dataset(cfg.dataset, Path(cfg.data_dir), Path(cfg.cache_dir))
    assert "(0 decoded" in caplog.text and "Generating" not in caplog.text  # tree and scan cache were ready
    made_here = load_dataset(cfg.dataset, tmp_path / "elsewhere", tmp_path / "elsewhere-cache")
    assert made_here.fingerprint == prepared.fingerprint  # the same images, labels and split


def test_a_dataset_that_fails_is_left_to_the_run_to_report(tiny_cfg, tmp_path: Path, capfd):
    (tmp_path / "empty").mkdir()
    cfg = tiny_cfg("dataset=folder", f"dataset.path={tmp_path / 'empty'}", synthetic=False)
    assert ahead.worth_preparing(cfg)  # a user's folder: its files may be new to the scan cache
    process = ahead.start(cfg)
    ahead.wait(process)
    assert process.exitcode == 1
    assert "Traceback" not in capfd.readouterr().err  # silent: the run's own load says it in one line
    with pytest.raises(BenchmarkError, match="0 class folder"):
        load_dataset(cfg.dataset, Path(cfg.data_dir), Path(cfg.cache_dir))


def test_nothing_is_spawned_when_the_run_may_stop_first(tiny_cfg, tmp_path: Path):
    """A run whose weights may fail must write nothing, not even the dataset (test_cli checks the run)."""
    assert ahead.start(tiny_cfg("backbone.weights=imagenet", "backbone.weights_fallback=error")) is None
    assert ahead.start(tiny_cfg(f"backbone.weights={tmp_path / 'other.weights.h5'}")) is None
    assert ahead.worth_preparing(tiny_cfg("backbone.weights=imagenet"))  # falls back to random at worst


def test_nothing_is_spawned_for_a_written_tree_or_an_npz(tiny_cfg, tmp_path: Path):
    cfg = tiny_cfg()
    load_dataset(cfg.dataset, Path(cfg.data_dir), Path(cfg.cache_dir))
    assert ahead.start(cfg) is None
    npz = tiny_cfg("dataset=medmnist", f"dataset.path={tmp_path / 'x.npz'}", synthetic=False)
    assert ahead.start(npz) is None
