"""Beyond one process: real Hydra launchers (joblib workers, submitit's local executor), MLflow tracking
to a real local store, and an Optuna search killed and resumed."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.cli import missing_plugin
from benchmark.runs.threads import available_cores, threads_for
from tests.conftest import ROOT, run_cli, tiny_overrides

CELLS = ["--multirun", "backbone=mobilenetv2,resnet50", "seed=0"]


def complete_runs(results: Path) -> list[Path]:
    return sorted(p.parent for p in results.glob("runs/synthetic/*/*/metrics.json"))


def test_two_joblib_workers_run_the_sweep_track_it_in_mlflow_and_resume(tmp_path: Path):
    mlflow = pytest.importorskip("mlflow.tracking")
    store = f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}"
    args = [*CELLS, "hydra/launcher=workers", "hydra.launcher.n_jobs=2", "logger=mlflow",
            f"logger.tracking_uri={store}", *tiny_overrides(tmp_path)]
    first = run_cli(args, timeout=600)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-3000:]
    runs = complete_runs(tmp_path / "results")
    assert [p.parent.name for p in runs] == ["mobilenetv2", "resnet50"]
    threads = [json.loads((p / "metrics.json").read_text())["tf_threads"] for p in runs]
    assert threads == [max(1, available_cores() // 2)] * 2  # each worker its share of the cores
    assert "sweep: 2 cells, 2 at a time" in log and "sweep finished: 2/2 cells complete" in log
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "| mobilenetv2 |" in markdown and "| resnet50 |" in markdown

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("medbench-synthetic")
    tracked = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in tracked) == ["mobilenetv2 seed0", "resnet50 seed0"]
    for run in tracked:
        metrics = json.loads((Path(run.data.tags["run_dir"]) / "metrics.json").read_text())
        record = json.loads((Path(run.data.tags["run_dir"]) / "mlflow_run.json").read_text())
        assert record["run_id"] == run.info.run_id  # where a Grad-CAM made after the sweep is added
        assert run.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
        assert run.data.params["backbone.name"] == metrics["backbone"]
        curve = client.get_metric_history(run.info.run_id, "history/val_loss")
        assert [m.step for m in curve] == list(range(1, metrics["epochs_run"] + 1))
        assert {"metrics.json", "head.keras", "curves.png"} <= {a.path for a in client.list_artifacts(
            run.info.run_id)}

    again = run_cli(args, timeout=600)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert log.count("already complete") == 2 and not re.search(r"epoch +\d+ +loss", log)
    assert len(client.search_runs([experiment.experiment_id])) == 2  # a skipped cell is not logged again


def test_the_submitit_local_launcher_runs_its_cells_one_at_a_time_by_default(tmp_path: Path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_cli([*CELLS, "hydra/launcher=slurm_local", *tiny_overrides(tmp_path)], timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    runs = complete_runs(tmp_path / "results")
    assert [p.parent.name for p in runs] == ["mobilenetv2", "resnet50"]
    assert (tmp_path / "results" / "leaderboard.md").is_file()
    spans = sorted((manifest["started"], manifest["finished"])
                   for manifest in (json.loads((p / "manifest.json").read_text()) for p in runs))
    assert spans[0][1] <= spans[1][0]  # array_parallelism=1: the second cell started after the first ended


def study_states(folder: Path) -> list[str]:
    """Trial states straight from the study's SQLite file (what a second process sees)."""
    databases = list(folder.glob("*.db"))
    if not databases:
        return []
    try:
        with sqlite3.connect(databases[0]) as db:
            return [state for (state,) in db.execute("select state from trials order by number")]
    except sqlite3.OperationalError:  # the tables are not created yet
        return []


def test_an_optuna_search_killed_mid_study_resumes_to_exactly_its_trials(tmp_path: Path):
    pytest.importorskip("optuna")
    args = ["hparams_search=head", "hparams_search.n_trials=3", *tiny_overrides(tmp_path)]
    search = subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    folder = tmp_path / "results" / "search"
    try:
        deadline = time.monotonic() + 300
        while study_states(folder).count("COMPLETE") < 1:
            assert time.monotonic() < deadline and search.poll() is None, "the first trial never finished"
            time.sleep(0.1)
    finally:
        os.killpg(search.pid, signal.SIGKILL)
        search.wait()
    assert study_states(folder).count("COMPLETE") == 1

    resumed = run_cli(args, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert study_states(folder) == ["COMPLETE"] * 3
    (summary,) = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    best = summary["best"]
    metrics = json.loads((Path(best["run_dir"]) / "metrics.json").read_text())
    assert best["value"] == pytest.approx(metrics["val_macro_auroc"])  # chosen on validation
    assert best["value"] == max(t["value"] for t in summary["trials"])
    report = run_cli([f"results_dir={tmp_path / 'results'}"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-2000:]
    assert summary["study"] in (tmp_path / "results" / "leaderboard.md").read_text()


def test_threads_follow_the_launcher():
    from omegaconf import OmegaConf

    joblib = OmegaConf.create({"n_jobs": 2})
    assert threads_for("auto", joblib) == max(1, available_cores() // 2)
    assert threads_for("auto", OmegaConf.create({"cpus_per_task": 6})) == 6
    assert threads_for("auto", OmegaConf.create({"ray": {"remote": {"num_cpus": 3}}})) == 3
    assert threads_for("auto", OmegaConf.create({})) is None  # one process: TensorFlow's default
    assert threads_for(4, joblib) == 4


def test_a_missing_launcher_plugin_names_the_extra_to_install():
    message = "In 'hydra/launcher/ray_cluster': Could not load 'hydra/launcher/ray'."
    expected = "the Hydra launcher plugin 'ray' is not installed: pip install -e '.[ray]'"
    assert missing_plugin(message) == expected
    assert missing_plugin("Could not find 'hydra/launcher/nonsense'") is None
    assert "'.[cluster]'" in missing_plugin("Could not load 'hydra/launcher/submitit_local_array'.")
