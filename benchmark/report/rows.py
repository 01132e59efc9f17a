"""Rows of the leaderboard: runs grouped across seeds, each row's estimates, ranking and cost summaries."""

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.metrics.table import BY_KEY, PER_CLASS, metric
from benchmark.report.load import Run, is_number, number

PER_CLASS_SHOWN = tuple(m for m in PER_CLASS if m.headline)


@dataclass(frozen=True)
class Row:
    """One (dataset, backbone, config_hash) group: the same experiment repeated over seeds."""

    dataset: str
    backbone: str
    config_hash: str
    label: str
    runs: tuple[Run, ...]

    @property
    def classes(self) -> list[str]:
        return list(self.runs[0].metrics["classes"])

    @property
    def weights(self) -> str:
        return " / ".join(sorted({str(run.metrics["weights_used"]) for run in self.runs}))


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval; `source` says where the interval comes from (seeds, bootstrap, none)."""

    mean: float
    low: float
    high: float
    source: str


def group_rows(runs: list[Run]) -> dict[str, list[Row]]:
    """Rows per dataset: one per (backbone, configuration, weights actually used), so a partly offline
    sweep never averages ImageNet and random-init seeds together. A backbone with several rows gets
    what tells them apart (config hash, weights) in its label."""
    groups: dict[tuple[str, str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        m = run.metrics
        groups[(str(m["dataset"]), str(m["backbone"]), str(m["config_hash"]), str(m["weights_used"]))].append(
            run
        )
    variants: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for dataset, backbone, config, weights in groups:
        variants[(dataset, backbone)].append((config, weights))
    rows: dict[str, list[Row]] = defaultdict(list)
    for (dataset, backbone, config, weights), members in sorted(groups.items()):
        siblings = variants[(dataset, backbone)]
        tell = [config] if len({c for c, _ in siblings}) > 1 else []
        tell += [weights] if len({w for _, w in siblings}) > 1 else []
        label = f"{backbone} ({', '.join(tell)})" if tell else backbone
        ordered = tuple(sorted(members, key=seed_order))
        rows[dataset].append(Row(dataset, backbone, config, label, ordered))
    return dict(rows)


def seed_order(run: Run) -> tuple[int, float, str]:
    """Numeric seeds in numeric order (seed2 before seed10), anything else after them."""
    seed = run.metrics["seed"]
    return (0, float(seed), "") if is_number(seed) else (1, 0.0, str(seed))


def nan_mean(found: list[float] | np.ndarray) -> float:
    found = np.asarray(found, dtype=float)
    found = found[np.isfinite(found)]
    return float(found.mean()) if found.size else math.nan


def values(row: Row, key: str) -> np.ndarray:
    found = np.array([number(run.metrics, key) for run in row.runs])
    return found[np.isfinite(found)]


def mean_of(row: Row, key: str) -> float:
    return nan_mean(values(row, key))


def estimate(row: Row, key: str, level: float) -> Estimate:
    """Across seeds: mean ± t·sd/√n. One seed: that run's test-set bootstrap CI, if it recorded one.

    With few seeds t is large (12.7 for two), so a t-interval of a [0, 1] metric is clipped to [0, 1].
    """
    found = values(row, key)
    if found.size >= 2:
        mean = float(found.mean())
        half = stats.t.ppf((1 + level) / 2, found.size - 1) * found.std(ddof=1) / math.sqrt(found.size)
        low, high = mean - half, mean + half
        if key in BY_KEY and BY_KEY[key].bounded:
            low, high = max(low, 0.0), min(high, 1.0)
        return Estimate(mean, float(low), float(high), "seeds")
    if found.size == 1:
        low, high = (number(row.runs[0].metrics, f"{key}_ci_{end}") for end in ("low", "high"))
        source = "bootstrap" if math.isfinite(low) and math.isfinite(high) else "none"
        return Estimate(float(found[0]), low, high, source)
    return Estimate(math.nan, math.nan, math.nan, "none")


def rank(rows: list[Row], key: str) -> list[Row]:
    """Best first by the seed mean of metric `key`; rows without it go last."""
    sign = -1.0 if metric(key).higher_is_better else 1.0

    def order(row: Row) -> tuple[bool, float, str]:
        mean = mean_of(row, key)
        return (math.isnan(mean), sign * mean if not math.isnan(mean) else 0.0, row.label)

    return sorted(rows, key=order)


def training_time(row: Row) -> float:
    """Feature extraction + training, in seconds. Extraction is timed on runs that did it rather than
    reading it from the cache, since later seeds reuse the first seed's features."""
    extracted = [r for r in row.runs if not r.metrics.get("features_from_cache")]
    extraction = [number(r.metrics, "feature_extraction_s") for r in (extracted or row.runs)]
    extraction_s = nan_mean(extraction)  # NaN when a mode (finetune) has no separate extraction step
    return (0.0 if math.isnan(extraction_s) else extraction_s) + mean_of(row, "training_s")


def per_class_means(rows: list[Row]) -> pd.DataFrame:
    """Sensitivity, specificity, F1 and AUROC per class, averaged over each row's seeds."""
    records = []
    for row in rows:
        for name in row.classes:
            record = {"row": row.label, "class": name}
            for m in PER_CLASS_SHOWN:
                found = [number(run.metrics["per_class"].get(name, {}), m.key) for run in row.runs]
                record[m.key] = nan_mean(found)
            record["support"] = row.runs[0].metrics["per_class"].get(name, {}).get("support")
            records.append(record)
    return pd.DataFrame.from_records(records)


def mean_confusion(row: Row) -> np.ndarray:
    return np.mean([np.asarray(run.metrics["confusion_matrix"], dtype=float) for run in row.runs], axis=0)


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Points no other point beats on both (lower cost, higher quality): the ones worth choosing."""
    front = np.zeros(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i]))
        front[i] = np.isfinite(cost[i]) and np.isfinite(quality[i]) and not dominated.any()
    return front
