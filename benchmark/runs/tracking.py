"""MLflow tracking of a finished run (`logger=mlflow`): params, per-epoch curves, final metrics, files.

It reads what the run directory already holds, so tracking cannot change a result, and it runs after the
run is published: an unreachable tracking server costs a few seconds and a warning that the run was not
tracked, never a finished run. MLflow 3 refuses its old folder store, so the local default is a SQLite file
in results_dir (its artifacts beside it); any server URI works the same way. The run directory keeps where
its MLflow run is (mlflow_run.json), so what a sweep adds later (its Grad-CAM panels) joins the same run;
a complete run made with a logger but without it (the server was down when it finished), or with logging
left half done, is tracked, in that same MLflow run, when a later run skips it.
"""

import contextlib
import logging
import os
import re
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from benchmark.errors import BenchmarkError
from benchmark.files import read_json, write_json
from benchmark.runs.settings import number

log = logging.getLogger(__name__)
T = TypeVar("T")

RECORD = "mlflow_run.json"  # in a tracked run directory: its store, experiment and MLflow run id
ON_DISK = "the run is complete on disk"  # what an untracked run still is (never_raising)

# MLflow's HTTP client retries a request 7 times with a backoff factor of 2 (about 4 minutes against a
# server that is down) and waits 120 s for an answer. The run is complete before it is tracked, so a server
# that does not answer should cost seconds: these apply only where the user has not set them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
CONNECT_TIMEOUT_S = 5  # the reachability check before a server's first request

# Tracking URIs found unreachable by this process, with why: a sweep's further cells do not wait for the
# connect timeout again (21 skipped cells were 21 waits), and the log says so once.
_UNREACHABLE: dict[str, str] = {}
_SAID: set[str] = set()  # the once-per-process notes already logged


class Unreachable(ConnectionError):
    """The tracking server cannot be connected to: the run is not tracked."""


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted MLflow params (Hydra's own node and the logger's left out)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("hydra", None)
    tree.pop("logger", None)
    params: dict[str, str] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            params[prefix[:-1]] = str(node)[:6000]  # MLflow's limit on a param value

    walk(tree, "")
    return params


def metric_part(name: str) -> str:
    """One part of a metric name as MLflow accepts it (letters, digits, _ - . and space; a class name may
    hold other characters, which become _)."""
    part = re.sub(r"[^\w.\- ]", "_", name)
    return part if part.strip(".") else part.replace(".", "_") or "_"  # never an empty, . or .. part


def final_metrics(metrics: dict) -> dict[str, float]:
    """Every finite number of metrics.json, nested records flattened with '/' (calibration/temperature,
    per_class/<class>/auroc, operating_points/<class>/<rule>/test/sensitivity). Flags, text and lists
    (the confusion matrix, the coverage curve) are left out: they are in the metrics.json artifact."""
    flat: dict[str, float] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = prefix + metric_part(str(key))
            if isinstance(value, dict):
                walk(value, f"{name}/")
            elif number(value):
                flat[name[:250]] = float(value)  # MLflow's limit on a key

    walk(metrics, "")
    return flat


def local_store(uri: str) -> Path | None:
    """The file of a local SQLite store (its artifacts go beside it); None for a server."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    store = local_store(uri)
    location = (store.parent / "mlartifacts").resolve().as_uri() if store else None
    return client.create_experiment(name, artifact_location=location)


def check_installed() -> None:
    """Before a run starts: a missing MLflow is a user error, not a surprise after an hour of training."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise BenchmarkError("logger=mlflow needs MLflow: pip install -e '.[tracking]'") from None


def once(key: str, level: int, message: str, *args: object) -> None:
    """Log a note once per process: it holds for every run that follows."""
    if key not in _SAID:
        _SAID.add(key)
        log.log(level, message, *args)


def check_reachable(uri: str) -> None:
    """Raise Unreachable when nothing answers at a tracking server's address (one connection attempt of at
    most CONNECT_TIMEOUT_S, once per process and URI). A local store, or a server reached through a proxy,
    is left to MLflow itself."""
    if uri in _UNREACHABLE:
        raise Unreachable(_UNREACHABLE[uri])
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname):
        return  # only the proxy can tell
    address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    try:
        socket.create_connection(address, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        _UNREACHABLE[uri] = f"the tracking server {uri} is unreachable ({reason}, not tried again)"
        log.warning("MLflow: the tracking server %s is unreachable (%s): not tried again by this process; "
                    "its runs stay complete on disk, and a later run or sweep with logger=mlflow tracks them "
                    "when it skips them", uri, reason)
        raise Unreachable(f"the tracking server {uri} is unreachable ({reason})") from None


@contextlib.contextmanager
def client_for(uri: str) -> Iterator:
    """An MLflow client of this store, with bounded HTTP retries, once the server answers; one writer at a
    time on a local SQLite store (parallel sweep workers), as a server serialises itself. The server is
    checked first: one that is down costs no import of MLflow (seconds on a busy machine)."""
    check_reachable(uri)
    from mlflow.tracking import MlflowClient

    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    store = local_store(uri)
    if store:
        store.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{store}.lock") if store else contextlib.nullcontext():
        yield MlflowClient(uri)


def unfinished(run_dir: Path) -> dict | None:
    """The record of an MLflow run that was created for this run directory but not logged to the end (a
    record written before `finished` existed was written only once logging had succeeded)."""
    path = run_dir / RECORD
    if not path.is_file():
        return None
    record = read_json(path)
    return None if record.get("finished", True) else record


def new_record(cfg: DictConfig, dataset: str) -> dict:
    """Where to track a run (the same store from any working directory) and the one timestamp of its
    metrics, so that logging them again into the same MLflow run adds nothing (MLflow drops an exact
    duplicate)."""
    uri = str(cfg.logger.tracking_uri)
    store = local_store(uri)
    if store:
        uri = f"sqlite:///{store.resolve()}"
    named = cfg.logger.experiment  # a number is a name too (logger.experiment=0)
    return {"tracking_uri": uri, "experiment": f"medbench-{dataset}" if named is None else str(named),
            "artifacts": bool(cfg.logger.artifacts), "logged_at": int(time.time() * 1000), "finished": False}


def create_run(client, record: dict, run_dir: Path, metrics: dict) -> str:
    run = client.create_run(
        experiment_id(client, record["experiment"], record["tracking_uri"]),
        run_name=f"{metrics['backbone']} seed{metrics['seed']}",
        tags={"run_dir": str(run_dir.resolve()), "config_hash": metrics["config_hash"],
              "backbone": metrics["backbone"], "train_mode": metrics["train_mode"],
              "weights_used": str(metrics["weights_used"])},
    )
    return run.info.run_id


def log_run(cfg: DictConfig, dataset: str, run_dir: Path, metrics: dict) -> str:
    """Log one complete run; returns its MLflow run id. mlflow_run.json is written as soon as the MLflow run
    exists (finished: false) and marked finished at the end, so logging that fails half way (a file that
    cannot be uploaded, a server that goes down) is done again into that same MLflow run when a later run
    skips this one, never into a second."""
    record = unfinished(run_dir) or new_record(cfg, dataset)
    with client_for(record["tracking_uri"]) as client:
        if "run_id" not in record:
            record["run_id"] = create_run(client, record, run_dir, metrics)
            write_json(run_dir / RECORD, record)
        run_id = record["run_id"]
        try:
            log_contents(client, record, cfg, run_dir, metrics)
            client.set_terminated(run_id)
        except Exception:
            with contextlib.suppress(Exception):  # not left RUNNING; the error is the one reported
                client.set_terminated(run_id, "FAILED")
            raise
    write_json(run_dir / RECORD, {**record, "finished": True})
    log.info("MLflow: run %s in experiment %s at %s", run_id, record["experiment"], record["tracking_uri"])
    return run_id


def never_raising(action: Callable[[], T], what: str, kept: str, failed: str = "logging failed") -> T | None:
    """Run one tracking step; a failure is logged, never raised (the one place that says so): what it
    would track is on disk already (`kept` says where), and a tracking server that is down must not turn
    a finished run into a failed cell, a skip into a failure or stop a sweep's report. An unreachable
    server is a warning; anything else (`failed`: what went wrong) an error."""
    try:
        return action()
    except Unreachable as error:
        log.warning("MLflow: %s is NOT tracked (%s): %s", what, kept, error)
    except Exception as error:
        log.error("MLflow: %s is NOT tracked (%s): %s: %s", what, kept, failed, error)
    return None


def track(cfg: DictConfig, dataset: str, run_dir: Path, metrics: dict) -> str | None:
    """Log a published run; a failure is reported, never raised: the finished run stays as it is."""
    return never_raising(lambda: log_run(cfg, dataset, run_dir, metrics), str(run_dir), ON_DISK)


def untracked_config(cfg: DictConfig, run_dir: Path) -> DictConfig | None:
    """The run's own config.yaml, to track it with, if it was meant to be tracked and is not: made with a
    logger, and no mlflow_run.json or an unfinished one. None for a tracked run, a run made with
    logger=null (never meant to be tracked), or while the store of now is known to be unreachable."""
    record = run_dir / RECORD
    if record.is_file() and unfinished(run_dir) is None:
        return None  # tracked: never logged twice
    if str(cfg.logger.tracking_uri) in _UNREACHABLE:
        return None  # said once, when it was found unreachable
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    if not run_cfg.get("logger"):
        once("logger=null", logging.INFO, "MLflow: complete runs made with logger=null are not tracked when "
             "skipped (force=true logger=mlflow runs them again, tracked)")
        return None
    return run_cfg


def track_if_untracked(cfg: DictConfig, dataset: str, run_dir: Path, metrics: dict) -> str | None:
    """Track a complete run met again (skipped on resume) that was made with a logger but is not tracked:
    it finished while the server was down, or its logging failed half way; no later sweep would otherwise
    ever log it. Its params come from its own config.yaml, as if tracked when it finished. A skip never
    fails: what cannot be read is logged (never_raising)."""
    run_cfg = never_raising(lambda: untracked_config(cfg, run_dir), str(run_dir), ON_DISK,
                            f"its config.yaml or {RECORD} cannot be read")
    if run_cfg is None:
        return None
    run_cfg.logger = OmegaConf.to_container(cfg.logger, resolve=True)  # where to track it: the store of now
    log.info("MLflow: %s is complete but not tracked yet: tracking it now", run_dir)
    return track(run_cfg, dataset, run_dir, metrics)


def log_contents(client, record: dict, cfg: DictConfig, run_dir: Path, metrics: dict) -> None:
    """Params, the per-epoch curves (history.csv), the final metrics and, with logger.artifacts, the files;
    all again, unchanged, where an earlier try failed half way."""
    from mlflow.entities import Metric, Param

    params = [Param(key, value) for key, value in flat_params(cfg).items()]
    history = pd.read_csv(run_dir / "history.csv")
    now = record["logged_at"]
    curves = [
        Metric(f"history/{column}", float(value), now, step)  # step = epoch
        for step, row in enumerate(history.to_dict("records"), start=1)
        for column, value in row.items()
        if column != "epoch" and number(value)
    ]
    finals = [Metric(key, value, now, 0) for key, value in final_metrics(metrics).items()]
    run_id = record["run_id"]
    for start in range(0, len(params), 100):  # MLflow's batch limit on params
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(curves) + len(finals), 1000):
        client.log_batch(run_id, metrics=(curves + finals)[start : start + 1000])
    if record["artifacts"]:
        client.log_artifacts(run_id, str(run_dir))


def log_added(run_dir: Path, scores: dict) -> str | None:
    """Add to a tracked run's MLflow run what was made after it was tracked (a sweep's Grad-CAM: its
    scores, and gradcam.png with the updated metrics.json where the run's files were logged). Returns the
    MLflow run id; None for a run that was not tracked."""
    from mlflow.entities import Metric

    if not (run_dir / RECORD).is_file():
        return None
    record = read_json(run_dir / RECORD)
    run_id = record["run_id"]
    with client_for(record["tracking_uri"]) as client:
        now = int(time.time() * 1000)
        added = [Metric(key, value, now, 0) for key, value in final_metrics(scores).items()]
        if added:
            client.log_batch(run_id, metrics=added)
        if record.get("artifacts"):
            for name in ("gradcam.png", "metrics.json"):
                if (run_dir / name).is_file():
                    client.log_artifact(run_id, str(run_dir / name))
    log.info("MLflow: Grad-CAM of %s added to run %s", run_dir, run_id)
    return run_id
