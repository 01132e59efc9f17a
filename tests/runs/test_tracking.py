"""MLflow tracking (logger=mlflow) to a real local store, no mocks: every number of metrics.json, a tracking
server that is down, and a sweep's Grad-CAM joining the MLflow run of the run it explains."""

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from benchmark.report.after_sweep import explain_runs, track_explained
from benchmark.runs import tracking
from tests.conftest import compose_config

mlflow = pytest.importorskip("mlflow.tracking")


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_of_run(saved_run, tmp_path: Path) -> Path:
    """A private copy of the session's finished tiny run (with its model), in its results layout."""
    shutil.copytree(saved_run[0].parents[4], tmp_path, dirs_exist_ok=True)
    (run_dir,) = (tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*")
    return run_dir


def tracking_cfg(run_dir: Path, uri: str):
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.logger = {"name": "mlflow", "tracking_uri": uri, "experiment": None, "artifacts": True}
    return cfg


def made_with_logger(saved_run, tmp_path: Path, uri: str) -> Path:
    """A copy of the finished run whose config.yaml says it was made with logger=mlflow at uri, as a run
    that finished while that server was down (the session's run was made with logger=null)."""
    run_dir = copy_of_run(saved_run, tmp_path)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(tracking_cfg(run_dir, uri)))
    return run_dir


def hung_server() -> tuple[str, list[socket.socket]]:
    """The URI of a server that accepts no connection and refuses none: its backlog is full, so a connection
    attempt waits for its timeout (as behind a firewall that drops packets). Keep the sockets open."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    held = [server]
    while True:
        client = socket.socket()
        client.settimeout(0.3)
        try:
            client.connect(server.getsockname())
        except TimeoutError:
            client.close()
            return f"http://127.0.0.1:{server.getsockname()[1]}", held
        held.append(client)


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test as a new process: no tracking server remembered as unreachable, no note said yet."""
    monkeypatch.setattr(tracking, "_UNREACHABLE", {})
    monkeypatch.setattr(tracking, "_SAID", set())


def test_every_finite_number_of_metrics_json_is_a_metric_nested_ones_flattened(saved_run, tmp_path):
    run_dir = copy_of_run(saved_run, tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    odd_classes = {"COVID-19 (severe)/x": {"auroc": 0.5}, "..": {"f1": 0.25}}  # not valid MLflow key parts
    odd = {**metrics, "per_class": {**metrics["per_class"], **odd_classes}}
    run_id = tracking.log_run(tracking_cfg(run_dir, store), "synthetic", run_dir, odd)

    client = mlflow.MlflowClient(store)
    logged = client.get_run(run_id).data.metrics
    assert logged["calibration/temperature"] == pytest.approx(metrics["calibration"]["temperature"])
    assert logged["evaluation/n_bootstrap"] == metrics["evaluation"]["n_bootstrap"]
    for name in metrics["classes"]:
        assert logged[f"per_class/{name}/auroc"] == pytest.approx(metrics["per_class"][name]["auroc"])
        point = metrics["operating_points"][name]["youden"]["test"]["sensitivity"]
        assert logged[f"operating_points/{name}/youden/test/sensitivity"] == pytest.approx(point)
    assert logged["per_class/COVID-19 _severe__x/auroc"] == 0.5 and logged["per_class/__/f1"] == 0.25
    assert "calibration/temperature_at_bound" not in logged  # a flag, not a number
    assert not any(key.startswith(("confusion_matrix", "coverage_curve")) for key in logged)  # lists
    assert {key for key in logged if not key.startswith("history/")} == set(tracking.final_metrics(odd))
    assert json.loads((run_dir / tracking.RECORD).read_text())["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_down_tracking_server_costs_seconds_and_the_run_stays_complete(saved_run, tmp_path, caplog):
    from benchmark.runs.pipeline import run

    copy_of_run(saved_run, tmp_path)
    cfg = compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri=http://127.0.0.1:{closed_port()}",
                         "force=true")
    with caplog.at_level(logging.WARNING):
        metrics = run(cfg)
    (run_dir,) = (tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*")
    assert json.loads((run_dir / "metrics.json").read_text())["config_hash"] == metrics["config_hash"]
    assert not (run_dir / tracking.RECORD).exists()
    assert f"{run_dir} is NOT tracked (the run is complete on disk)" in caplog.text
    assert "is unreachable" in caplog.text

    started = time.monotonic()
    with pytest.raises(tracking.Unreachable):
        tracking.log_run(cfg, "synthetic", run_dir, metrics)
    assert time.monotonic() - started < 10


def test_mlflows_own_retries_are_bounded_unless_the_user_set_them(saved_run, tmp_path, monkeypatch):
    """Through a proxy (here one that is down) only MLflow's HTTP client can tell: its retries, ~4 min by
    default, take seconds; a setting of the user's stays."""
    run_dir = copy_of_run(saved_run, tmp_path)
    for name in tracking.HTTP_DEFAULTS:  # unset here, restored after the test
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    started = time.monotonic()
    with pytest.raises(Exception, match="127.0.0.1"):
        tracking.log_run(tracking_cfg(run_dir, "http://mlflow.invalid:5000"), "synthetic", run_dir, metrics)
    assert time.monotonic() - started < 30
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == tracking.HTTP_DEFAULTS[
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def test_a_sweeps_gradcam_joins_the_mlflow_run_of_the_run_it_explains(saved_run, tmp_path):
    run_dir = copy_of_run(saved_run, tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = tracking.log_run(tracking_cfg(run_dir, store), "synthetic", run_dir,
                              json.loads((run_dir / "metrics.json").read_text()))
    client = mlflow.MlflowClient(store)
    assert "gradcam_randomization_spearman" not in client.get_run(run_id).data.metrics

    sweep = compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri={store}", "explain.n_images=2")
    explain_runs(sweep, [run_dir])  # what the sweep's end does for each leaderboard row's best seed
    explained = json.loads((run_dir / "metrics.json").read_text())
    logged = client.get_run(run_id).data.metrics
    added = {key: value for key, value in explained.items() if key.startswith("gradcam")}
    assert logged["gradcam_images"] == 2  # and the Spearman check where it applies (not on 32-px maps)
    assert {key: logged[key] for key in logged if key.startswith("gradcam")} == tracking.final_metrics(added)
    assert "gradcam.png" in {a.path for a in client.list_artifacts(run_id)}
    uploaded = Path(client.download_artifacts(run_id, "metrics.json", str(tmp_path / "download")))
    assert json.loads(uploaded.read_text()) == explained
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1  # the same run


def test_a_down_server_leaves_the_sweeps_gradcam_untracked_with_a_warning(tmp_path, caplog):
    (tmp_path / tracking.RECORD).write_text(json.dumps(
        {"tracking_uri": f"http://127.0.0.1:{closed_port()}", "run_id": "0" * 32, "artifacts": True}))
    with caplog.at_level(logging.WARNING):
        track_explained(tmp_path, {"gradcam_randomization_spearman": 0.1})
    assert "NOT tracked" in caplog.text and "is unreachable" in caplog.text
    assert tracking.log_added(tmp_path / "untracked", {"gradcam_images": 2}) is None


def test_every_tracking_step_fails_the_same_way_logged_never_raised(caplog):
    """A run's tracking, a skipped run's and a sweep's Grad-CAM all go through never_raising: a server
    down is a warning, anything else an error naming what failed; the caller gets None, never the error."""
    def broken() -> str:
        raise OSError("disk full")

    def down() -> str:
        raise tracking.Unreachable("server x is unreachable")

    with caplog.at_level(logging.WARNING):
        assert tracking.never_raising(lambda: "run-id", "run a", "kept") == "run-id"
        assert tracking.never_raising(broken, "run b", "it is on disk") is None
        assert tracking.never_raising(down, "run c", "it is on disk", "cannot be read") is None
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("ERROR", "MLflow: run b is NOT tracked (it is on disk): logging failed: disk full"),
        ("WARNING", "MLflow: run c is NOT tracked (it is on disk): server x is unreachable"),
    ]


def test_a_run_finished_while_the_server_was_down_is_tracked_once_when_met_again(saved_run, tmp_path, caplog):
    """A run made with logger=mlflow that finished while the server was down has no mlflow_run.json: it is
    skipped on resume and tracked then, with what it would have logged at the time; never twice."""
    from benchmark.runs.pipeline import run

    run_dir = copy_of_run(saved_run, tmp_path)
    down_args = ["logger=mlflow", f"logger.tracking_uri=http://127.0.0.1:{closed_port()}"]
    down = compose_config(tmp_path, *down_args)
    with caplog.at_level(logging.WARNING):
        run(compose_config(tmp_path, "force=true", *down_args))  # trained again while the server is down
        run(down)  # skipped: complete on disk; the server is known to be down, nothing more is said
    assert caplog.text.count(f"{run_dir} is NOT tracked (the run is complete on disk)") == 1
    assert caplog.text.count("not tried again by this process") == 1
    assert not (run_dir / tracking.RECORD).exists()

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    up = compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri={store}")
    metrics = run(up)  # skipped again, and tracked now
    run(up)  # a tracked run is not logged twice
    client = mlflow.MlflowClient(store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "medbench-synthetic"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_id == json.loads((run_dir / tracking.RECORD).read_text())["run_id"]
    assert logged.info.run_name == "mobilenetv2 seed0" and logged.info.status == "FINISHED"
    finals = {key: value for key, value in logged.data.metrics.items() if not key.startswith("history/")}
    assert finals == pytest.approx(tracking.final_metrics(metrics))
    assert "history/val_loss" in logged.data.metrics
    assert logged.data.params == tracking.flat_params(OmegaConf.load(run_dir / "config.yaml"))
    assert {"metrics.json", "config.yaml", "history.csv"} <= {a.path for a in client.list_artifacts(
        logged.info.run_id)}


def test_a_run_made_with_logger_null_is_not_tracked_when_skipped(saved_run, tmp_path, caplog):
    """logger=null means the run was never meant to be tracked: a later sweep with logger=mlflow that skips
    it logs nothing of it (nor uploads its files), and says so once."""
    from benchmark.runs.pipeline import run

    run_dir = copy_of_run(saved_run, tmp_path)  # made with logger=null
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    up = compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri={store}")
    with caplog.at_level(logging.INFO):
        run(up)
        run(up)
    assert not (run_dir / tracking.RECORD).exists()
    assert not any(mlflow.MlflowClient(store).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(store).search_experiments()]))
    assert caplog.text.count("complete runs made with logger=null are not tracked when skipped") == 1


def test_logging_that_failed_after_the_mlflow_run_was_created_ends_in_that_run(saved_run, tmp_path, caplog):
    """A file of the run directory that cannot be uploaded fails the logging after MLflow's run exists: the
    next skip logs into that same run (no second run, no metric twice) once the file can be read."""
    from benchmark.runs.pipeline import run

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = made_with_logger(saved_run, tmp_path, store)
    (run_dir / "notes.txt").symlink_to(tmp_path / "moved-away.txt")  # a dangling link: unreadable
    up = compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri={store}")
    with caplog.at_level(logging.ERROR):
        run(up)
    assert f"{run_dir} is NOT tracked (the run is complete on disk): logging failed" in caplog.text
    record = json.loads((run_dir / tracking.RECORD).read_text())
    client = mlflow.MlflowClient(store)
    assert record["finished"] is False
    assert client.get_run(record["run_id"]).info.status == "FAILED"

    (run_dir / "notes.txt").unlink()
    run(up)
    run(up)
    (experiment,) = [e for e in client.search_experiments() if e.name == "medbench-synthetic"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_id == record["run_id"] and logged.info.status == "FINISHED"
    assert json.loads((run_dir / tracking.RECORD).read_text())["finished"] is True
    epochs = len((run_dir / "history.csv").read_text().splitlines()) - 1
    assert len(client.get_metric_history(logged.info.run_id, "history/val_loss")) == epochs
    assert len(client.get_metric_history(logged.info.run_id, "accuracy")) == 1
    assert "config.yaml" in {a.path for a in client.list_artifacts(logged.info.run_id)}


def test_a_damaged_config_yaml_is_an_error_line_not_a_failed_cell(saved_run, tmp_path, caplog):
    from benchmark.runs.pipeline import run

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = made_with_logger(saved_run, tmp_path, store)
    (run_dir / "config.yaml").write_text("logger: [unclosed\n")
    with caplog.at_level(logging.WARNING):
        metrics = run(compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri={store}"))
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    assert f"{run_dir} is NOT tracked (the run is complete on disk): its config.yaml" in caplog.text
    assert not (run_dir / tracking.RECORD).exists()


def test_a_server_that_does_not_answer_is_waited_for_once(saved_run, tmp_path, caplog, monkeypatch):
    """Each skipped untracked cell of a resumed sweep waited for the connect timeout again (21 cells, 105 s);
    the first wait is the only one, and the log says so once."""
    uri, held = hung_server()
    monkeypatch.setattr(tracking, "CONNECT_TIMEOUT_S", 1)
    run_dir = made_with_logger(saved_run, tmp_path, uri)
    cfg = compose_config(tmp_path, "logger=mlflow", f"logger.tracking_uri={uri}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    waits = []
    with caplog.at_level(logging.WARNING):
        for _cell in range(4):
            started = time.monotonic()
            assert tracking.track_if_untracked(cfg, "synthetic", run_dir, metrics) is None
            waits.append(time.monotonic() - started)
    for sock in held:
        sock.close()
    assert waits[0] >= 1 and sum(waits[1:]) < 0.5, waits
    assert caplog.text.count(f"the tracking server {uri} is unreachable (timed out): not tried again") == 1
    assert caplog.text.count("is NOT tracked") == 1  # the first cell's
    assert not (run_dir / tracking.RECORD).exists()
