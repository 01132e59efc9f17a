"""The top-k ensemble: the k best backbones' test probabilities, averaged and evaluated.

Members are the k rows (backbone + configuration, averaged over seeds) with the lowest validation loss:
choosing them by a test metric would be model selection on the test set. The ensemble is filed as a run
directory, so the report ranks it next to the single backbones.
"""

import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from benchmark.data.dataset import DATA_FACTS
from benchmark.errors import BenchmarkError
from benchmark.files import digest, write_json, write_text
from benchmark.metrics.evaluate import Settings, evaluate
from benchmark.metrics.predictions import predictions_frame
from benchmark.report.load import Collection, Run, Skipped, collect, sort_into
from benchmark.report.paired import NotComparable, Predictions, seed_averaged
from benchmark.report.rows import Row, choose_on_validation, group_rows, mean_of
from benchmark.report.versions import Stale
from benchmark.runs.identity import ON_CACHED_FEATURES
from benchmark.runs.layout import ENSEMBLE, ensemble_dirs, run_path
from benchmark.runs.model_card import with_interval
from benchmark.runs.settings import whole

log = logging.getLogger(__name__)
SELECT_BY = "best_val_loss"
ADDITIVE_COSTS = ("params_total", "model_size_mb", "latency_ms")  # members run one after another


def select_members(rows: list[Row], k: int) -> list[Row]:
    """The k rows with the lowest mean validation loss; rows without one (older runs) cannot be chosen."""
    candidates = [row for row in rows if row.backbone != ENSEMBLE and np.isfinite(mean_of(row, SELECT_BY))]
    return sorted(candidates, key=lambda row: (mean_of(row, SELECT_BY), row.label))[:k]


def best_members(rows: list[Row], k: int) -> list[Row]:
    """The members an ensemble of `rows` takes now: among the rows chosen on validation, the k best on it."""
    return select_members(choose_on_validation(rows)[0], k)


def averaged(members: list[Row]) -> Predictions:
    """Mean of the members' seed-averaged probabilities; all must be tested on the same images."""
    predictions = [seed_averaged(row) for row in members]
    first = predictions[0]
    for row, other in zip(members[1:], predictions[1:], strict=True):
        if not (np.array_equal(other.files, first.files) and np.array_equal(other.labels, first.labels)):
            raise NotComparable(f"{row.label} and {members[0].label} were tested on different images")
    probabilities = np.mean([p.probabilities for p in predictions], axis=0)
    return Predictions(first.files, first.labels, probabilities, first.classes, first.groups)


def shared_backbone(row: Row) -> tuple:
    """What members can share one pass of: a frozen backbone (frozen head, probes) at one input size, with
    its weights and preprocessing (`Row.weights`); a fine-tuned row's network is its own."""
    if row.regime not in ON_CACHED_FEATURES:
        return row.label, row.config_hash
    return row.backbone, row.image_size, row.weights


def costs(members: list[Row]) -> dict[str, float]:
    """Deployment cost of running every member: sums, and throughput as the harmonic combination, over
    the distinct networks (QA: three heads of one frozen ResNet50 counted it three times): members on one
    frozen backbone pass it once, priced at the costliest of them, so their other heads are not added (a
    Dense head is small beside a backbone; a kNN head holds the train features and may not be)."""
    by_backbone: dict[tuple, list[Row]] = {}
    for row in members:
        by_backbone.setdefault(shared_backbone(row), []).append(row)
    found = {key: float(sum(max(mean_of(row, key) for row in rows) for rows in by_backbone.values()))
             for key in ADDITIVE_COSTS}
    slowest = [min(mean_of(row, "throughput_ips") for row in rows) for rows in by_backbone.values()]
    found["throughput_ips"] = float(1 / sum(1 / speed for speed in slowest))
    return found


def retire_old_ensembles(results_dir: Path, dataset: str, new: Path) -> None:
    """Members change as runs are added: an old ensemble would linger as a second, stale row. One of other
    members or another k is named as it goes; `new`'s own earlier copy is written again silently."""
    for old in ensemble_dirs(results_dir, dataset):
        if old != new:
            log.info("replacing the ensemble %s by %s", old.name, new.name)
        shutil.rmtree(old)


def retire_stale_ensembles(results_dir: Path, stale: list[Stale], dataset: str) -> None:
    """An ensemble on another version of the data than its dataset's current one is never ranked, and no
    command re-runs it: it is removed, as a replaced one is, and made again from the current runs once two
    rows are on them."""
    for group in stale:
        for run in group.runs:
            if group.dataset == dataset and run.metrics.get("backbone") == ENSEMBLE:
                log.info("removing %s: an ensemble of runs on another version of %s's data", run.rel, dataset)
                shutil.rmtree(results_dir / run.rel)


def members_settings(members: list[Row]) -> Settings:
    """The evaluation settings every member run was scored with; the ensemble is scored the same way."""
    found = {Settings.of_run(run.metrics) for row in members for run in row.runs}
    if len(found) > 1:
        raise NotComparable(f"the members were evaluated with different settings {sorted(map(str, found))}")
    return found.pop()


def write_ensemble(results_dir: Path, dataset: str, members: list[Row]) -> Path:
    """Evaluate the averaged probabilities and write metrics.json (last), predictions.csv and config.yaml."""
    predictions = averaged(members)
    labels = [row.label for row in members]
    config_hash = digest(dataset, [(row.backbone, row.config_hash) for row in members], length=8)
    run_dir = run_path(results_dir, dataset, ENSEMBLE, f"top{len(members)}-{config_hash}")
    settings = members_settings(members)
    scores = evaluate(predictions.labels, predictions.probabilities, list(predictions.classes), settings,
                      groups=predictions.groups)  # patients resampled, as the members' intervals were
    reference = members[0].runs[0].metrics
    metrics = {
        "backbone": ENSEMBLE, "dataset": dataset, "classes": list(predictions.classes),
        "synthetic_data": reference.get("synthetic_data"),
        "weights_used": " + ".join(sorted({row.weights for row in members})),  # "imagenet" when all agree
        "train_mode": "ensemble", "seed": "all", "config_hash": config_hash, "members": labels,
        "selected_by": f"lowest mean {SELECT_BY}", "image_size": reference.get("image_size"),
        **{key: reference.get(key) for key in DATA_FACTS}, **scores, **costs(members),
        "dataset_fingerprint": reference.get("dataset_fingerprint"),  # members are on one version (load.py)
    }
    table = predictions_frame(predictions.files, predictions.probabilities, list(predictions.classes),
                              labels=predictions.labels)
    retire_old_ensembles(results_dir, dataset, run_dir)
    write_text(run_dir / "predictions.csv", table.to_csv(index=False))
    splits = results_dir / members[0].runs[0].rel / "splits.csv"  # the patient groups of its test images
    if splits.exists():
        write_text(run_dir / "splits.csv", splits.read_text())
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml({"members": labels, "selected_by": SELECT_BY}))
    # Averaging does not depend on the machine: the ensemble keeps its members' machine, commit and versions.
    inherited = {key: value for key, value in members[0].runs[0].manifest.items()
                 if key in ("machine", "git_commit", "versions")}
    member_runs = [run.rel for row in members for run in row.runs]
    write_json(run_dir / "manifest.json", {**inherited, "members": member_runs})
    write_json(run_dir / "metrics.json", metrics)
    log.info("ensemble of %s on %s: accuracy %s, macro-AUROC %s -> %s", ", ".join(labels), dataset,
             with_interval(metrics, "accuracy", 4), with_interval(metrics, "macro_auroc", 4), run_dir)
    return run_dir


def build_ensembles(
    results_dir: Path, k: int, dataset: str | None = None, strict: bool = True,
    collection: Collection | None = None,
) -> list[Path]:
    """One ensemble per dataset (or the named one), its ensemble on another version of
    the data removed first (versions.py); a dataset with fewer than 2 candidates then has none.

    `strict=False` (the report's option) turns members tested on different images into a warning.
    `collection`: the run directories as the caller read them (the report), else read here.
    """
    if not whole(k, 2):  # k=abc was a traceback from a comparison
        raise BenchmarkError(f"k={k!r} must be a whole number of at least 2: e.g. k=3")
    if collection is None:
        collection = collect(results_dir)
    rows = group_rows(collection.runs)  # members among the rows chosen on validation
    if dataset is not None and dataset not in rows:
        raise BenchmarkError(f"dataset={dataset} has no complete runs under {results_dir}/runs: "
                             f"choose one of {', '.join(sorted(rows)) or '(none)'}")
    written = []
    for name in [dataset] if dataset else sorted(rows):
        retire_stale_ensembles(results_dir, collection.stale, name)
        members = best_members(rows[name], k)
        if len(members) < 2:
            log.warning("no ensemble for %s: fewer than 2 rows with a validation loss", name)
            continue
        try:
            written.append(write_ensemble(results_dir, name, members))
        except NotComparable as error:
            if strict:
                raise BenchmarkError(f"cannot ensemble {name}: {error}") from None
            log.warning("no ensemble for %s: %s", name, error)
    return written


def without_outdated_ensembles(collection: Collection) -> Collection:
    """An ensemble whose member runs are no longer those of the k rows with the lowest validation loss (runs
    were added since it was built, and this report built none: report.ensemble_k=0) would rank a choice
    that no longer holds: it is set aside, with the command that builds it again."""
    rows = group_rows(collection.runs)  # ensembles are rows of their own, never members
    kept, aside = [], []
    for run in collection.runs:
        labels, member_runs = run.metrics.get("members") or [], run.manifest.get("members") or []
        if run.metrics.get("backbone") == ENSEMBLE and member_runs:
            k = len(labels)
            now = best_members(rows.get(run.metrics.get("dataset"), []), k)
            if sorted(member_runs) != sorted(found.rel for row in now for found in row.runs):
                changed = ("the same rows, whose runs were added or removed since" if sorted(labels) ==
                           sorted(row.label for row in now) else ", ".join(row.label for row in now) + " now")
                aside.append(Skipped(run.rel, (
                    f"an ensemble of {', '.join(labels)}, no longer the runs of the {k} rows with the lowest "
                    f"validation loss ({changed}): not ranked; `make report ENSEMBLE={k}` builds it again")))
                continue
        kept.append(run)
    return replace(collection, runs=kept, skipped=sorted([*collection.skipped, *aside], key=lambda s: s.rel))


def with_ensembles(results_dir: Path, k: int, collection: Collection) -> Collection:
    """The report's ensembles built from its collection (a member tested on other images is a warning),
    and that collection as the disk now holds it: the ensembles written read in (one may replace an
    ensemble of the same name), the ones removed (replaced, or on another version of the data) left out,
    in collect's order. The other runs are not read a second time."""
    written = build_ensembles(results_dir, k, strict=False, collection=collection)
    made = Collection()
    for path in written:
        sort_into(made, path, results_dir)
    new = {found.rel for found in [*made.runs, *made.skipped]}

    def kept(found: Run | Skipped) -> bool:
        return found.rel not in new and (results_dir / found.rel).is_dir()

    def order(found: Run | Skipped) -> tuple[str, ...]:  # collect's: run_dirs sorts paths
        return Path(found.rel).parts

    stale = [replace(group, runs=tuple(filter(kept, group.runs))) for group in collection.stale]
    return replace(
        collection,
        runs=sorted([*filter(kept, collection.runs), *made.runs], key=order),
        skipped=sorted([*filter(kept, collection.skipped), *made.skipped], key=order),
        stale=[group for group in stale if group.runs],
    )
