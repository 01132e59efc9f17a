"""The Optuna search chooses on validation only, in each metric's own direction."""

from pathlib import Path

import pytest

from benchmark.runs.search import VALIDATION_METRICS, study_name, summary
from tests.conftest import compose_config, run_cli


def test_a_search_on_a_test_metric_stops_before_any_trial(tmp_path: Path):
    pytest.importorskip("optuna")
    result = run_cli(["hparams_search=head", "hparams_search.metric=macro_auroc",
                      f"results_dir={tmp_path / 'results'}", f"data_dir={tmp_path / 'data'}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: hparams_search.metric=macro_auroc is not a validation metric" in result.stderr
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_the_best_trial_follows_the_metrics_direction(metric: str):
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(direction=VALIDATION_METRICS[metric])
    for value in (0.7, 0.2, 0.9):
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}))
    chosen = summary(study, metric)
    assert chosen["direction"] == VALIDATION_METRICS[metric]
    assert chosen["best"]["value"] == (0.9 if VALIDATION_METRICS[metric] == "maximize" else 0.2)


def test_another_metric_is_another_study(tmp_path: Path):
    """Optuna loads a stored study with its stored direction: the metric must be part of the name."""
    names = {study_name(compose_config(tmp_path, "hparams_search=head", f"hparams_search.metric={metric}"))
             for metric in VALIDATION_METRICS}
    assert len(names) == len(VALIDATION_METRICS)
