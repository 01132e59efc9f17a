"""MLflow tracking of a finished run (`logger=mlflow`): params, per-epoch curves, final metrics, files.

It reads what the run directory already holds, so tracking cannot change a result, and it runs after the
run is published: an unreachable tracking server costs a logged error, never a finished run. MLflow 3
refuses its old folder store, so the local default is a SQLite file in results_dir (its artifacts beside
it); any server URI works the same way.
"""

import contextlib
import logging
import math
import time
from pathlib import Path

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)


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


def final_metrics(metrics: dict) -> dict[str, float]:
    """Every finite number of metrics.json (flags and nested records left out)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


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


def log_run(cfg: DictConfig, dataset: str, run_dir: Path, metrics: dict) -> str:
    """Log one complete run; returns its MLflow run id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = str(cfg.logger.tracking_uri)
    store = local_store(uri)
    if store:
        store.parent.mkdir(parents=True, exist_ok=True)
    name = cfg.logger.experiment or f"medbench-{dataset}"
    # one writer at a time on a local SQLite store (parallel sweep workers); a server serialises itself
    with FileLock(f"{store}.lock") if store else contextlib.nullcontext():
        client = MlflowClient(uri)
        run = client.create_run(
            experiment_id(client, name, uri),
            run_name=f"{metrics['backbone']} seed{metrics['seed']}",
            tags={"run_dir": str(run_dir.resolve()), "config_hash": metrics["config_hash"],
                  "backbone": metrics["backbone"], "train_mode": metrics["train_mode"],
                  "weights_used": str(metrics["weights_used"])},
        )
        run_id = run.info.run_id
        params = [mlflow.entities.Param(key, value) for key, value in flat_params(cfg).items()]
        history = pd.read_csv(run_dir / "history.csv")
        now = int(time.time() * 1000)
        curves = [
            mlflow.entities.Metric(f"history/{column}", float(value), now, step)  # per epoch: history.csv
            for step, row in enumerate(history.to_dict("records"), start=1)
            for column, value in row.items()
            if column != "epoch" and isinstance(value, int | float) and math.isfinite(value)
        ]
        finals = [mlflow.entities.Metric(key, value, now, 0) for key, value in final_metrics(metrics).items()]
        for start in range(0, len(params), 100):  # MLflow's batch limit on params
            client.log_batch(run_id, params=params[start : start + 100])
        for start in range(0, len(curves) + len(finals), 1000):
            client.log_batch(run_id, metrics=(curves + finals)[start : start + 1000])
        if cfg.logger.artifacts:
            client.log_artifacts(run_id, str(run_dir))
        client.set_terminated(run_id)
    log.info("MLflow: run %s in experiment %s at %s", run_id, name, uri)
    return run_id
