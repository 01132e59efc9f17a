"""Run directories: where a run is filed, how it is written atomically, and what it records.

A run is complete only when `metrics.json` exists. Files are written into a hidden staging folder
that is renamed into place at the end, so a killed run never looks complete and a re-run with
`force=true` replaces an old run only once the new one has fully succeeded.
"""

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from benchmark.files import digest

# Settings that do not change what is trained or how it is scored: runs differing only here are the same.
NOT_PART_OF_THE_EXPERIMENT = ("results_dir", "cache_dir", "data_dir", "seed", "force", "debug", "hydra",
                              "explain", "efficiency")
NOT_PART_OF_TRAINING = ("save_model", "run_eagerly")


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved experiment: paths, flags, reporting options and Hydra's node left out, the
    effective image size and the absolute data path put in, so equal experiments share one directory."""
    from backbones.registry import get  # late: keras.applications is heavy and only runs need it

    experiment = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in NOT_PART_OF_THE_EXPERIMENT])
    resolved = OmegaConf.to_container(experiment, resolve=True)
    for key in NOT_PART_OF_TRAINING:
        resolved["train"].pop(key, None)
    resolved["image_size"] = int(resolved["image_size"] or get(cfg.backbone.name).default_size)
    if resolved["dataset"].get("path"):
        resolved["dataset"]["path"] = str(Path(resolved["dataset"]["path"]).expanduser().resolve())
    return digest(resolved, length=8)


def run_directory(cfg: DictConfig, dataset: str) -> Path:
    return Path(cfg.results_dir) / "runs" / dataset / cfg.backbone.name / f"seed{cfg.seed}-{config_hash(cfg)}"


def is_complete(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def staging_directory(run_dir: Path) -> Path:
    """A fresh hidden sibling to write into; the report ignores hidden folders."""
    staging = run_dir.with_name(f".{run_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, run_dir: Path) -> None:
    """Move a finished staging folder into place, replacing an older run only now."""
    if run_dir.exists():
        retired = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
        run_dir.rename(retired)
        staging.rename(run_dir)
        shutil.rmtree(retired)
    else:
        staging.rename(run_dir)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import keras
    import numpy
    import sklearn
    import tensorflow

    return {
        "python": sys.version.split()[0],
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
    }


def machine() -> dict:
    import tensorflow as tf

    gpus = [
        tf.config.experimental.get_device_details(g).get("device_name", g.name)
        for g in tf.config.list_physical_devices("GPU")
    ]
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "gpus": gpus, "platform": platform.platform()}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())
