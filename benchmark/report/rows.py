"""Rows of the leaderboard: runs grouped across seeds, the validation choice of one configuration per
backbone, each row's estimates, ranking and cost summaries."""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmark.metrics.estimands import Interval
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import PER_CLASS, metric
from benchmark.report.estimates import (
    Estimates,
    SharedResamples,
    estimate_row,
    no_interval,
    temperature,
    temperature_bound,
)
from benchmark.report.load import Run, is_number, number
from benchmark.runs.identity import WITHOUT_GRADCAM
from benchmark.runs.layout import ENSEMBLE

PER_CLASS_SHOWN = tuple(m for m in PER_CLASS if m.headline)
PHASES = {"head": "head warm-up", "finetune": "fine-tune"}  # metrics.json's best_phase, in training order


@dataclass(frozen=True)
class Row:
    """One (dataset, backbone, config_hash) group: the same experiment repeated over seeds."""

    dataset: str
    backbone: str
    config_hash: str
    label: str
    runs: tuple[Run, ...]
    estimates: Estimates | None = None  # set by `with_estimates`

    @property
    def weights_used(self) -> str:
        return str(self.runs[0].metrics["weights_used"])

    @property
    def image_size(self) -> int:
        return int(self.runs[0].metrics.get("image_size") or 0)

    @property
    def regime(self) -> str:
        """How the backbone was used: frozen (head), finetune, linear or knn probe (train.mode)."""
        return regime_of(self.runs[0])

    @property
    def is_ensemble(self) -> bool:
        return self.backbone == ENSEMBLE

    @property
    def members(self) -> list[str]:
        """An ensemble's rows (its metrics.json); none for a trained row."""
        return list(self.runs[0].metrics.get("members") or [])

    @property
    def seeds_text(self) -> str:
        """How many trained models the row's number stands for: seeds, or an ensemble's k models."""
        if self.is_ensemble:
            members = self.runs[0].manifest.get("members") or []
            return f"1 ensemble of {len(self.members)} rows ({len(members)} models)"
        return str(len(self.runs))

    @property
    def classes(self) -> list[str]:
        return list(self.runs[0].metrics["classes"])

    @property
    def weights(self) -> str:
        """The weights' source as the tables show it (imagenet / file name + hash / random), with a
        preprocessing that is not the backbone's own (a configuration, so it is the same for every seed)."""
        used = " / ".join(sorted({str(run.metrics["weights_used"]) for run in self.runs}))
        override = self.runs[0].metrics.get("preprocess_override")
        return f"{used}, preprocess {override}" if override else used


def regime_of(run: Run) -> str:
    return str(run.metrics.get("train_mode") or "frozen")


def size_of(run: Run) -> str:
    return f"{run.metrics.get('image_size')} px"


def group_rows(runs: list[Run]) -> dict[str, list[Row]]:
    """Rows per dataset: one per (backbone, configuration, weights actually used), so a partly offline
    sweep never averages ImageNet and random-init seeds together. A backbone with several rows gets
    what tells them apart (regime, then config hash within a regime, weights) in its label."""
    groups: dict[tuple[str, str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        m = run.metrics
        groups[(str(m["dataset"]), str(m["backbone"]), str(m["config_hash"]), str(m["weights_used"]))].append(
            run
        )
    variants: dict[tuple[str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    for (dataset, backbone, config, weights), members in groups.items():
        variants[(dataset, backbone)].append((config, weights, regime_of(members[0]), size_of(members[0])))
    rows: dict[str, list[Row]] = defaultdict(list)
    for (dataset, backbone, config, weights), members in sorted(groups.items()):
        siblings, regime, size = variants[(dataset, backbone)], regime_of(members[0]), size_of(members[0])
        tell = [regime] if len({r for _, _, r, _ in siblings}) > 1 else []
        tell += [size] if len({z for _, _, _, z in siblings}) > 1 else []
        tell += [config] if len({c for c, _, r, z in siblings if (r, z) == (regime, size)}) > 1 else []
        tell += [weights] if len({w for _, w, _, _ in siblings}) > 1 else []
        label = f"{backbone} ({', '.join(tell)})" if tell else backbone
        if backbone == ENSEMBLE:
            label = f"ensemble top-{len(members[0].metrics.get('members') or [])}"
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


def error_bars(rows: list[Row], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows' values (the table's: mean over seeds) and the 2 x n lengths of their asymmetric error
    bars (the table's intervals); NaN where a row has no interval."""
    found = [estimate(row, key) for row in rows]
    means = np.array([e.estimate for e in found])
    return means, np.array([[e.estimate - e.low for e in found], [e.high - e.estimate for e in found]])


def estimate(row: Row, key: str) -> Interval:
    """The row's value of column `key` with its interval; without one (a metric the bootstrap does not
    cover, or seeds tested on different images) the mean over seeds and no interval."""
    if row.estimates is not None and key in row.estimates.intervals:
        return row.estimates.intervals[key]
    return no_interval(mean_of(row, key))


def with_estimates(rows: list[Row], settings: Settings) -> list[Row]:
    """Each row with its intervals; rows tested on the same images share one set of resamples."""
    shared = SharedResamples(settings)
    return [
        replace(
            row,
            estimates=estimate_row(
                row.runs, row.classes, (row.dataset, row.backbone, row.config_hash, row.weights_used), shared
            ),
        )
        for row in rows
    ]


def validation_loss(row: Row) -> float:
    return mean_of(row, "best_val_loss")


def choose_on_validation(rows: list[Row]) -> tuple[list[Row], dict[tuple[str, str, str], list[Row]]]:
    """One row per backbone, regime, input size and weights: the configuration with the lowest mean
    validation loss (regimes and sizes stay separate rows: which of them pays is the question asked).

    Ranking every configuration by its test score would pick the luckiest test score; the choice is made
    on validation, and the test set only measures the chosen one. Returns the chosen rows and, per
    (backbone, regime, weights) with more than one configuration, all of them ordered by validation loss.
    A configuration without a validation loss (older runs) is chosen only when none has one.
    """
    families: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        families[(row.backbone, f"{row.regime}, {row.image_size} px", row.weights_used)].append(row)
    chosen, alternatives = [], {}
    for family, members in families.items():
        ordered = sorted(members, key=lambda r: (math.isnan(validation_loss(r)), validation_loss(r), r.label))
        chosen.append(ordered[0])
        if len(ordered) > 1:
            alternatives[family] = ordered
    return chosen, alternatives


def rank(rows: list[Row], key: str) -> list[Row]:
    """Best first by the row's value of metric `key` (the mean over seeds); rows without it go last."""
    sign = -1.0 if metric(key).higher_is_better else 1.0

    def order(row: Row) -> tuple[bool, float, str]:
        mean = estimate(row, key).estimate
        return (math.isnan(mean), sign * mean if not math.isnan(mean) else 0.0, row.label)

    return sorted(rows, key=order)


def timed_extraction(metrics: dict) -> float | None:
    """A run's extraction seconds where every image it did not read from the cache passed the network."""
    copied = metrics.get("features_reused_images")
    return None if metrics.get("features_from_cache") or copied else number(metrics, "feature_extraction_s")


def priced_extraction(metrics: dict) -> float | None:
    """Seconds for every image's forward pass at the throughput a run that copied features from earlier
    cache entries (train/features.py) measured (its extraction's, else its efficiency's): without the
    build, tracing, decoding and cache writes a cold run also pays. None for a run that copied nothing,
    or without a throughput."""
    throughput = metrics.get("extraction_ips") or metrics.get("throughput_ips")
    if not metrics.get("features_reused_images") or not throughput:
        return None
    return sum(metrics["split_sizes"].values()) / throughput


def training_time(row: Row) -> float:
    """Feature extraction + training, in seconds. Extraction is timed on runs that did it rather than
    reading it from the cache, since later seeds reuse the first seed's features; where none did, priced
    on runs that copied features from other entries; where neither, the runs' own (cache reading) time."""
    timed = [s for r in row.runs if (s := timed_extraction(r.metrics)) is not None]
    priced = [s for r in row.runs if (s := priced_extraction(r.metrics)) is not None]
    extraction = timed or priced or [number(r.metrics, "feature_extraction_s") for r in row.runs]
    extraction_s = nan_mean(extraction)  # NaN when a mode (finetune) has no separate extraction step
    return (0.0 if math.isnan(extraction_s) else extraction_s) + mean_of(row, "training_s")


def class_mean(row: Row, key: str, class_name: str) -> float:
    """A per-class metric of metrics.json (e.g. F1), averaged over the row's seeds."""
    return nan_mean([number(run.metrics["per_class"].get(class_name, {}), key) for run in row.runs])


def seed_counts(found: list[str], n: int, order: list[str] | None = None) -> str:
    """`a 1/3, b 2/3 seeds`: how many of a row's n seeds gave each value (in `order`, else sorted)."""
    position = {value: i for i, value in enumerate(order or [])}
    counts = sorted(Counter(found).items(), key=lambda item: (position.get(item[0], len(position)), item[0]))
    return ", ".join(f"{value} {k}/{n}" for value, k in counts) + " seeds"


def preset_of(run: Run) -> str | None:
    """The paper preset (`experiment=<name>`) the run was composed with; None without one or for runs made
    before it was recorded."""
    return run.metrics.get("experiment") or None


def presets(row: Row) -> list[str]:
    """The presets the row's seeds ran under, sorted: one, or none for runs without; two only where two
    presets compose the same configuration (one config hash)."""
    return sorted({name for run in row.runs if (name := preset_of(run)) is not None})


def best_phases(row: Row) -> list[str]:
    """Each fine-tuned seed's metrics.json best_phase (a PHASES key): the head warm-up's or the
    fine-tuning's weights, whichever had the lower validation loss; empty for other regimes."""
    return [str(phase) for run in row.runs if (phase := run.metrics.get("best_phase"))]


def best_phase_text(row: Row) -> str | None:
    """`fine-tune 2/2 seeds`: the row's best phases in words, for the page; None for other regimes."""
    found = [PHASES.get(phase, phase) for phase in best_phases(row)]
    return seed_counts(found, len(row.runs), list(PHASES.values())) if found else None


def estimated_temperatures(row: Row) -> list[float]:
    """The seeds' fitted temperatures that are estimates, from metrics.json (no predictions needed): a fit at
    its bound is the search's limit, and a mean with it would read as an estimate (1.2 and 20 as 10.6)."""
    return [t for run in row.runs if (t := temperature(run)) is not None and temperature_bound(run) is None]


def mean_temperature(row: Row) -> float:
    """The row's temperature: the mean of its estimated ones; NaN when no seed's fit is an estimate."""
    found = estimated_temperatures(row)
    return float(np.mean(found)) if found else math.nan


def bounds_hit(row: Row) -> Counter[float]:
    """How many of the row's seeds had their temperature fit stop at each search bound."""
    return Counter(bound for run in row.runs if (bound := temperature_bound(run)) is not None)


def mean_confusion(row: Row) -> np.ndarray:
    return np.mean([np.asarray(run.metrics["confusion_matrix"], dtype=float) for run in row.runs], axis=0)


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Points no other point beats on both (lower cost, higher quality): the ones worth choosing."""
    front = np.zeros(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i]))
        front[i] = np.isfinite(cost[i]) and np.isfinite(quality[i]) and not dominated.any()
    return front


def best_seed(row: Row) -> Run:
    """The row's run with the lowest validation loss: the one whose Grad-CAM the leaderboard shows."""
    return min(
        row.runs,
        key=lambda run: (
            math.isnan(number(run.metrics, "best_val_loss")),
            number(run.metrics, "best_val_loss"),
            seed_order(run),
        ),
    )


def best_seed_runs(runs: list[Run], results_dir: Path) -> list[Path]:
    """The validation-best run directory of every row chosen on validation among `runs` (a collection's,
    load.collect) that Grad-CAM applies to: ensembles left out (they have no model), kNN rows too."""
    found = []
    for rows in group_rows(runs).values():
        chosen, _ = choose_on_validation(rows)
        found += [results_dir / best_seed(row).rel for row in chosen
                  if not row.is_ensemble and row.regime not in WITHOUT_GRADCAM]
    return found
