"""Find and read run directories: a broken one becomes a listed reason, never a crash of the report."""

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.predictions import labels_of, probabilities_of, probability_column, read_predictions
from benchmark.metrics.table import HEADLINE
from benchmark.report.versions import Stale, current_data
from benchmark.runs import search
from benchmark.runs.identity import PROBES
from benchmark.runs.layout import ENSEMBLE, run_dirs

log = logging.getLogger(__name__)

# What the leaderboard cannot do without; timing and efficiency keys are optional (shown as "—").
REQUIRED_KEYS = ("backbone", "dataset", "classes", "seed", "config_hash", "weights_used", "per_class")
REQUIRED_NUMBERS = ("n_test", *(m.key for m in HEADLINE))  # newer metrics may be absent from older runs
FAILURE_KEYS = ("backbone", "dataset", "seed", "config_hash", "error_type", "error")


class CorruptRun(ValueError):
    """A run directory whose files cannot be trusted; the message is the reason shown in the report."""


@dataclass(frozen=True)
class Run:
    """One complete run: its metrics, manifest, test predictions and (if readable) training history."""

    rel: str  # path relative to results_dir, as shown in the report and the CSV
    metrics: dict
    manifest: dict
    predictions: pd.DataFrame
    history: pd.DataFrame | None


@dataclass(frozen=True)
class Failure:
    """A run that raised: `failed.json` written by the sweep instead of `metrics.json`."""

    rel: str
    dataset: str
    backbone: str
    seed: object
    config_hash: str
    error_type: str
    error: str  # first line only


@dataclass(frozen=True)
class Skipped:
    rel: str
    reason: str


@dataclass
class Collection:
    runs: list[Run] = field(default_factory=list)  # complete runs on their dataset's current data
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    stale: list[Stale] = field(default_factory=list)  # complete runs on another version of the data


def collect(results_dir: Path) -> Collection:
    """Sort every run directory into complete, failed and skipped (with the reason logged), and set aside
    complete runs made on another version of their dataset's data (versions.py): nothing that reads runs
    through here (the leaderboard, the ensemble, the sweep's Grad-CAM maps) can pool or compare them.
    Quiet about those: the report says so (build.load), once it has built its ensembles from the same
    collection; a report collects once."""
    found = Collection()
    for path in run_dirs(results_dir):
        sort_into(found, path, results_dir)
    found.runs, found.stale = current_data(found.runs, results_dir)
    return found


def sort_into(found: Collection, path: Path, results_dir: Path) -> None:
    """One run directory into the collection: complete, failed (unless a study made it good) or skipped,
    with the reason logged; each of its files read once."""
    rel = path.relative_to(results_dir).as_posix()
    try:
        if (path / "metrics.json").exists():
            found.runs.append(read_run(path, rel))
        elif (path / "failed.json").exists():
            record = read_json(path / "failed.json")
            failure = failure_of(record, rel)
            if not made_good(record, results_dir):
                found.failed.append(failure)
        else:
            found.skipped.append(Skipped(rel, "incomplete: no metrics.json (killed or still running?)"))
    except CorruptRun as error:
        log.warning("skipping %s: %s", rel, error)
        found.skipped.append(Skipped(rel, str(error)))


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptRun(f"{path.name} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise CorruptRun(f"{path.name} holds a {type(data).__name__}, not an object")
    return data


def read_run(path: Path, rel: str) -> Run:
    metrics = read_json(path / "metrics.json")
    check_metrics(metrics)
    if metrics.get("train_mode") in PROBES:  # fitted, not trained: older probe runs counted settings here
        metrics.pop("epochs_run", None)
    predictions = with_groups(read_checked_predictions(path, metrics), path)
    history = None if metrics["backbone"] == ENSEMBLE else read_history(path)  # an ensemble is not trained
    return Run(rel, metrics, read_manifest(path), predictions, history)


def with_groups(predictions: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Add the patient/study `group` of each test image from splits.csv, when the split had groups:
    the report's bootstrap then resamples whole groups, as the run's own intervals did."""
    try:
        splits = pd.read_csv(path / "splits.csv", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError):
        return predictions
    if not {"file", "split", "group"} <= set(splits.columns):
        return predictions
    test = splits[splits["split"] == "test"].set_index("file")["group"]
    groups = predictions["file"].map(test)
    if groups.isna().any() or (groups == "").all():
        return predictions
    return predictions.assign(group=groups)


def check_metrics(metrics: dict) -> None:
    missing = [key for key in (*REQUIRED_KEYS, *REQUIRED_NUMBERS) if key not in metrics]
    if missing:
        raise CorruptRun(f"metrics.json lacks {', '.join(missing)}")
    bad = [key for key in REQUIRED_NUMBERS if not is_number(metrics[key])]
    if bad:
        raise CorruptRun(f"metrics.json: {', '.join(bad)} not a number")
    classes = metrics["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise CorruptRun("metrics.json: classes is not a list of class names")
    if not (isinstance(metrics["per_class"], dict) and set(classes) <= set(metrics["per_class"])):
        raise CorruptRun("metrics.json: per_class does not cover every class")
    try:
        Settings.of_run(metrics)
    except (BenchmarkError, KeyError, TypeError, ValueError):
        raise CorruptRun("metrics.json lacks its evaluation settings (made by an older version?)") from None


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_checked_predictions(path: Path, metrics: dict) -> pd.DataFrame:
    """predictions.csv, checked against metrics.json: every class has a probability column, n_test rows."""
    try:
        table = read_predictions(path / "predictions.csv")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CorruptRun(f"predictions.csv is unreadable ({type(error).__name__})") from None
    columns = ["file", "true_label", *(probability_column(c) for c in metrics["classes"])]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CorruptRun(f"predictions.csv lacks column(s) {', '.join(missing)}")
    if len(table) != metrics["n_test"]:
        raise CorruptRun(f"predictions.csv has {len(table)} rows but n_test is {metrics['n_test']}")
    try:
        labels_of(table, metrics["classes"])
    except ValueError:
        raise CorruptRun("predictions.csv has true labels outside metrics.json's classes") from None
    try:
        probabilities_of(table, metrics["classes"])
    except ValueError:
        raise CorruptRun("predictions.csv has non-numeric probabilities") from None
    return table


def read_manifest(path: Path) -> dict:
    """Provenance only (commit, machine, time): a missing or broken manifest costs the header, not the run."""
    try:
        return read_json(path / "manifest.json")
    except CorruptRun as error:
        log.warning("%s: %s; machine and commit unknown for this run", path, error)
        return {}


def read_history(path: Path) -> pd.DataFrame | None:
    """The training curves; without them the run still counts, only its curve panel is empty."""
    try:
        history = pd.read_csv(path / "history.csv")
    except (OSError, ValueError, UnicodeDecodeError):
        log.warning("%s: history.csv missing or unreadable; no training curve for this run", path)
        return None
    if not {"epoch", "val_accuracy", "val_loss"} <= set(history.columns):
        log.warning("%s: history.csv lacks epoch/val_accuracy/val_loss; no training curve", path)
        return None
    return history


def failure_of(record: dict, rel: str) -> Failure:
    """failed.json's record, checked: the report lists it."""
    missing = [key for key in FAILURE_KEYS if key not in record]
    if missing:
        raise CorruptRun(f"failed.json lacks {', '.join(missing)}")
    lines = str(record["error"]).strip().splitlines()
    return Failure(
        rel=rel,
        dataset=str(record["dataset"]),
        backbone=str(record["backbone"]),
        seed=record["seed"],
        config_hash=str(record["config_hash"]),
        error_type=str(record["error_type"]),
        error=lines[0] if lines else "(no message)",
    )


def made_good(record: dict, results_dir: Path) -> bool:
    """A search cell's failure whose study has since finished what the cell asked for (search.made_good,
    the one statement of that rule): the process that finished it may remove the record
    (search.forget_failure) before this one writes it."""
    study = record.get("study")
    try:
        result = read_json(results_dir / "search" / f"{study}.json") if study else {}
    except CorruptRun:
        return False
    return search.made_good(record, result)


def number(metrics: dict, key: str) -> float:
    """A metric as float; NaN when absent or not numeric (older runs, other train modes)."""
    value = metrics.get(key)
    return float(value) if is_number(value) and math.isfinite(float(value)) else math.nan
