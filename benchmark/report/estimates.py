"""Every number of a row with the leaderboard's one interval method, on test resamples shared by all rows.

A row's value is the mean over its seeds of the per-seed test metric (`metrics/estimands.py`). Its
interval is the two-level bootstrap: the test set's resample weights are drawn once per dataset (the
same for every row, so rows compare on the same resamples), and each row draws its seeds with its own
seeded stream. Besides the metric table's metrics a row gets its per-class sensitivity, specificity and
AUROC, its calibration after temperature scaling, and its screening operating points; each value's
name is its column in leaderboard.csv.
"""

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from benchmark.files import digest
from benchmark.metrics import weighted
from benchmark.metrics.bootstrap import resample_weights, single_unit_class
from benchmark.metrics.calibration import apply_temperature, recorded_bound, recorded_temperature
from benchmark.metrics.estimands import (
    DEGENERATE,
    PROPORTION_COUNTS,
    Interval,
    in_units,
    seed_draws,
    seeds_vary,
    summarise,
    two_level_replicates,
    units_of,
)
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.operating_points import RULES
from benchmark.metrics.predictions import labels_of, probabilities_of
from benchmark.metrics.table import BY_KEY, PER_CLASS, WITH_INTERVAL
from benchmark.report.load import Run

OVERALL_KEYS = tuple(m.key for m in WITH_INTERVAL if not m.per_class)
PER_CLASS_KEYS = tuple(m.key for m in PER_CLASS if m.resampled is not None)
CALIBRATED_KEYS = ("ece", "brier", "log_loss")  # also scored after temperature scaling: <key>_calibrated
RULE_NAMES = {"target_sensitivity": "target sensitivity on validation", "youden": "Youden's J on validation"}
RATES = ("sensitivity", "specificity", "ppv", "npv")


class NotComparable(ValueError):
    """Seeds (or rows) that were not tested on the same images; the message says why."""


@dataclass(frozen=True, eq=False)  # one object per distinct test set: compared and hashed by identity
class TestSet:
    """The test images every seed of a row was scored on, and the dataset's shared resample weights."""

    files: tuple[str, ...]  # sorted
    labels: np.ndarray
    groups: np.ndarray | None  # patient/study of each image when the split had groups
    weights: np.ndarray = field(repr=False)  # (B, n) resample weights (bootstrap.resample_weights)

    @cached_property
    def single_unit(self) -> str | None:
        """bootstrap.single_unit_class: these resamples never vary some class."""
        return single_unit_class(self.labels, self.groups)

    @property
    def n_groups(self) -> int | None:
        return None if self.groups is None else len(set(self.groups.tolist()))


@dataclass(frozen=True)
class Estimates:
    """A row's intervals by column name, the replicates behind them (paired comparisons read these),
    and plain means that carry no interval (thresholds; a row's temperatures are read from its runs'
    metrics.json, which needs no predictions: rows.py)."""

    test: TestSet | None
    probabilities: np.ndarray | None = field(default=None, repr=False)  # (seeds, n, K), test.files order
    intervals: dict[str, Interval] = field(default_factory=dict)
    replicates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    means: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # why there are no intervals, e.g. seeds tested on different images
    seeds_vary: bool = True  # False: one seed, or seeds with identical predictions (no seed spread)


def aligned(
    runs: tuple[Run, ...], classes: list[str]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray | None, np.ndarray]:
    """(files, labels, groups, probabilities (seeds, n, K)) with every seed's rows in file order."""
    class_sets = sorted({", ".join(run.metrics["classes"]) for run in runs})
    if len(class_sets) > 1:  # only runs without a data fingerprint get here (load.py sets the others aside)
        raise NotComparable(f"its seeds were trained on different classes ({' / '.join(class_sets)})")
    tables = [run.predictions.sort_values("file", kind="stable").reset_index(drop=True) for run in runs]
    first = tables[0]
    if not first["file"].is_unique:
        raise NotComparable("predictions.csv lists a file twice")
    for table in tables[1:]:
        if not (
            table["file"].tolist() == first["file"].tolist()
            and table["true_label"].tolist() == first["true_label"].tolist()
        ):
            raise NotComparable("its seeds were tested on different images")
    groups = first["group"].to_numpy(dtype=str) if "group" in first.columns else None
    probabilities = np.stack([probabilities_of(table, classes) for table in tables])
    return tuple(first["file"]), labels_of(first, classes), groups, probabilities


class SharedResamples:
    """One weight matrix per distinct test set, so every row of a dataset is scored on the same resamples."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.found: dict[str, TestSet] = {}

    def test_set(self, files: tuple[str, ...], labels: np.ndarray, groups: np.ndarray | None) -> TestSet:
        key = digest(files, labels.tolist(), None if groups is None else groups.tolist())
        if key not in self.found:
            s = self.settings
            weights = resample_weights(labels, s.n_bootstrap, s.bootstrap_seed, groups)
            self.found[key] = TestSet(files, labels, groups, weights)
        return self.found[key]


def seed_stream(settings: Settings, identity: tuple[str, ...]) -> list[int]:
    """The row's own generator seed: fixed for the row, different between rows (independent seed draws)."""
    return [settings.bootstrap_seed, 1, int(digest(*identity, length=8), 16)]


def temperature(run: Run) -> float | None:
    return recorded_temperature(run.metrics.get("calibration"))


def temperature_bound(run: Run) -> float | None:
    """The search bound the run's temperature fit stopped at, None when its fit is an estimate or it has
    none (calibration.recorded_bound, the rule predict and export apply too). A fit at its bound is the
    search's limit, not an estimate, so the report shows the bound instead of the value."""
    return recorded_bound(run.metrics.get("calibration"))


def threshold(run: Run, class_name: str, rule: str) -> float | None:
    found = ((run.metrics.get("operating_points") or {}).get(class_name) or {}).get(rule) or {}
    value = found.get("threshold")
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


def estimate_row(
    runs: tuple[Run, ...], classes: list[str], identity: tuple[str, ...], shared: SharedResamples
) -> Estimates:
    """Every interval of one row (see the module docstring for the names)."""
    try:
        files, labels, groups, probabilities = aligned(runs, classes)
    except NotComparable as error:
        return Estimates(None, problem=str(error))
    settings = shared.settings
    test = shared.test_set(files, labels, groups)
    draws = seed_draws(len(runs), settings.n_bootstrap, seed_stream(settings, identity))
    ones = np.ones((1, len(labels)))
    found = Estimates(test, probabilities, seeds_vary=seeds_vary(probabilities))

    def add(name: str, per_seed_point: np.ndarray, per_seed: np.ndarray, counts: tuple | None = None) -> None:
        replicates = two_level_replicates(per_seed, draws)
        point = float(np.nanmean(per_seed_point)) if np.isfinite(per_seed_point).any() else float("nan")
        found.intervals[name] = summarise(point, replicates, settings.ci_level, counts, test.single_unit,
                                          found.seeds_vary)
        found.replicates[name] = replicates

    def score(key: str, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-seed point values, per-seed resampled values) of metric `key` on these probabilities."""
        formula = BY_KEY[key].resampled
        return (
            np.stack([formula(ones, labels, p, settings)[0] for p in probs]),
            np.stack([formula(test.weights, labels, p, settings) for p in probs]),
        )

    def counts_of(key: str) -> tuple | None:
        counter = PROPORTION_COUNTS.get(key)
        if counter is None:
            return None
        return tuple(np.mean([counter(labels, p, groups) for p in probabilities], axis=0))

    for key in OVERALL_KEYS:
        add(key, *score(key, probabilities), counts_of(key))
    for key in PER_CLASS_KEYS:
        points, resampled = score(key, probabilities)
        counts = counts_of(key)
        for k, name in enumerate(classes):
            add(
                f"{key}_{name}",
                points[:, k],
                resampled[..., k],
                None if counts is None else (counts[0][k], counts[1][k]),
            )

    temperatures = [temperature(run) for run in runs]
    if all(t is not None for t in temperatures):
        calibrated = np.stack(
            [apply_temperature(p, t) for p, t in zip(probabilities, temperatures, strict=True)]
        )
        for key in CALIBRATED_KEYS:
            add(f"{key}_calibrated", *score(key, calibrated))

    all_weights = np.vstack([ones, test.weights])  # row 0: the test set itself
    for k, name in enumerate(classes):  # every class one-vs-rest, binary tasks too (operating_points.py)
        for rule in RULES:
            thresholds = [threshold(run, name, rule) for run in runs]
            if any(t is None for t in thresholds):
                continue
            found.means[f"threshold_{rule}_{name}"] = float(np.mean(thresholds))
            scored = list(zip(probabilities, thresholds, strict=True))
            per_seed = [weighted.counts_at_threshold(all_weights, labels, p[:, k], k, t) for p, t in scored]
            # with groups, the exact fallback counts each rate's cases in patients: its cases' rows
            masks = ([weighted.cases_at_threshold(labels, p[:, k], k, t) for p, t in scored]
                     if groups is not None else [None] * len(scored))
            for rate in RATES:
                successes = np.stack([seed[rate][0] for seed in per_seed])
                cases = np.stack([seed[rate][1] for seed in per_seed])
                values = weighted.ratio(successes, cases, np.nan)
                exact = [  # the exact fallback's counts, per seed; with groups in the rate's patients
                    (s, n) if mask is None else in_units(s, n, units_of(groups, mask[rate][1]))
                    for s, n, mask in zip(successes[:, 0], cases[:, 0], masks, strict=True)
                ]
                add(f"{rate}_at_{rule}_{name}", values[:, 0], values[:, 1:],
                    tuple(float(np.mean(counts)) for counts in zip(*exact, strict=True)))
    return found


def no_interval(estimate: float) -> Interval:
    return Interval(estimate, float("nan"), float("nan"), 0, 0, DEGENERATE)
