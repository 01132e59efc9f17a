"""The metric table is the one declaration of every metric: each one reaches metrics.json, the
leaderboard's CSV and the report's ranking options, without a second list anywhere."""

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import BenchmarkError
from benchmark.metrics.table import METRICS, OVERALL, PER_CLASS, RANKABLE
from benchmark.report.build import check_config
from tests.conftest import CONF


@pytest.fixture(scope="module")
def sweep_outputs(tiny_sweep) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One run's metrics.json, and the runs.csv and leaderboard.csv the sweep built itself at its end."""
    results = tiny_sweep.root / "results"
    metrics_file = next(results.glob("runs/synthetic/mobilenetv2/*/metrics.json"))
    runs, rows = (pd.read_csv(results / name) for name in ("runs.csv", "leaderboard.csv"))
    return json.loads(metrics_file.read_text()), runs, rows


@pytest.mark.parametrize("metric", OVERALL, ids=lambda m: m.key)
def test_every_overall_metric_reaches_metrics_csv_and_ranking(sweep_outputs, metric):
    metrics, csv, rows = sweep_outputs
    assert isinstance(metrics[metric.key], float)
    assert metric.key in csv.columns and csv[metric.key].notna().any()
    ends = {f"{metric.key}_ci_low", f"{metric.key}_ci_high"}
    if metric.bootstrapped:
        assert ends <= set(metrics) and ends <= set(csv.columns)
    if metric.resampled is not None:  # the leaderboard's rows: the seed mean with its two-level interval
        assert ends <= set(rows.columns) and rows[metric.key].notna().all()
    if metric.resampled is None:  # no interval, so no ranking: the report refuses it as primary_metric
        assert metric.key not in RANKABLE
        with pytest.raises(BenchmarkError, match="is not a rankable metric"):
            check_config(_report_cfg(metric.key))
        return
    assert metric.key in RANKABLE
    check_config(_report_cfg(metric.key))  # the report accepts it as primary_metric


@pytest.mark.parametrize("metric", PER_CLASS, ids=lambda m: m.key)
def test_every_per_class_metric_reaches_metrics_and_csv(sweep_outputs, metric):
    metrics, csv, rows = sweep_outputs
    for name in metrics["classes"]:
        assert metric.key in metrics["per_class"][name]
        assert f"{metric.key}_{name}" in csv.columns
        if metric.resampled is not None:
            assert f"{metric.key}_{name}_ci_low" in rows.columns


def test_the_settings_that_shaped_the_numbers_are_recorded(sweep_outputs):
    metrics, csv, _ = sweep_outputs
    expected = {"ci_level": 0.95, "n_bootstrap": 200, "bootstrap_seed": 0, "ece_bins": 15}
    assert metrics["evaluation"] == expected
    assert set(csv["evaluation_n_bootstrap"]) == {200}


def test_keys_are_unique_and_per_class_metrics_are_not_rankable():
    keys = [m.key for m in METRICS]
    assert len(keys) == len(set(keys))
    with pytest.raises(BenchmarkError, match="not a rankable metric"):
        check_config(_report_cfg("sensitivity"))


def _report_cfg(primary: str):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF / "report.yaml")
    cfg.primary_metric = primary
    return cfg


@pytest.mark.parametrize("metric", [m for m in OVERALL if m.over_classes], ids=lambda m: m.key)
def test_a_mean_over_classes_is_undefined_without_every_class(metric):
    """In metrics.json and in the leaderboard's resamples alike: not a mean over fewer classes."""
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 1, 1, 0, 1])  # class 2 absent
    p = rng.dirichlet(np.ones(3), len(y))
    assert np.isnan(metric.compute(y, p, None))
    assert not np.isnan(metric.compute(np.array([0, 1, 2, 0, 1, 2]), p, None))
    if metric.resampled is not None:
        weights = np.array([[1, 1, 1, 1, 1, 1], [1, 2, 0, 2, 1, 0.0]])
        full = np.array([0, 1, 2, 0, 1, 2])
        found = metric.resampled(weights, full, p, None)  # row 1 draws no class-2 image
        assert not np.isnan(found[0]) and np.isnan(found[1])
