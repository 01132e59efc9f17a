"""leaderboard.md: provenance, warnings a reader must not miss, the tables, the significance test, figures."""

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark.data.audit import LEAK_KINDS
from benchmark.data.groups import plural
from benchmark.metrics.bootstrap import unit_labels
from benchmark.metrics.estimands import BOOTSTRAPS, MIN_CASES, small_classes
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import metric
from benchmark.report.estimates import temperature
from benchmark.report.external import external_section
from benchmark.report.load import Collection, Failure, Run, Skipped
from benchmark.report.paired import against_first, grouped
from benchmark.report.rows import Row, best_phase_text, best_seed, bounds_hit, mean_of
from benchmark.report.searches import search_summaries, searches_section
from benchmark.report.tables import (
    EXACT_MARK,
    calibration_table,
    comparisons_table,
    configurations_table,
    group_noun,
    main_table,
    markdown_table,
    operating_points_table,
    per_class_table,
    pivot_table,
    preset_markdown,
)
from benchmark.report.versions import Stale, fingerprints_of
from benchmark.runs.layout import ENSEMBLE
from benchmark.runs.model_card import absent_limits, few_validation_cases

WARNING = "> ⚠️"
TIME_FORMAT = "%Y-%m-%d %H:%M UTC"
LISTED_RUNS = 10  # a stale version's run directories named on the page; the rest counted


def unique(values: list[object]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")}) or ["unknown"]


def utc(stamp: object) -> str | None:
    """An ISO time from a manifest as a readable UTC minute; None when absent or unparsable."""
    try:
        return dt.datetime.fromisoformat(str(stamp)).astimezone(dt.UTC).strftime(TIME_FORMAT)
    except ValueError:
        return None


def machine_name(run: Run) -> str:
    """The CPU with its vector extensions (the latency and throughput columns depend on them; runs made
    before they were recorded show the model name alone), its cores, the GPUs."""
    machine = run.manifest.get("machine") or {}
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    cpu = ", ".join(part for part in (machine.get("cpu", "unknown CPU"), machine.get("cpu_features")) if part)
    return f"{cpu} ({machine.get('cpu_count', '?')} cores), {gpus}"


def banners(runs: list[Run], ranked: dict[str, list[Row]]) -> list[str]:
    """Synthetic data and non-ImageNet weights: both make the numbers mean something else entirely."""
    found = []
    synthetic = sorted({str(run.metrics["dataset"]) for run in runs if run.metrics.get("synthetic_data")})
    if synthetic:
        names = ", ".join(f"`{name}`" for name in synthetic)
        found.append(
            f"{WARNING} **Synthetic data: not medical evidence.** {names} "
            f"{'is a generated dataset' if len(synthetic) == 1 else 'are generated datasets'}: these numbers "
            "check the pipeline, they say nothing about diagnosing patients."
        )
    other = [
        f"`{dataset} / {row.label}` ({row.weights})"
        for dataset, rows in ranked.items()
        for row in rows
        if any(run.metrics["weights_used"] != "imagenet" for run in row.runs)
    ]
    if other:
        found.append(
            f"{WARNING} **Not transfer learning from ImageNet.** These rows did not use ImageNet weights: "
            f"{', '.join(other)}. Random init means an untrained feature extractor, one draw of it "
            "(`backbone.init_seed`) shared by every seed, so its intervals leave out the spread between "
            "draws; compare them with care."
        )
    return found


def version_text(fingerprint: str, classes: Sequence[str]) -> str:
    return f"fingerprint `{fingerprint}`, classes {', '.join(classes)}"


def stale_banners(stale: list[Stale]) -> list[str]:
    """Runs set aside as made on another version of their dataset's data (versions.py), one warning per
    version: which, why they are not ranked, and what brings them onto the current data. An ensemble is
    never re-run: building ensembles removes one on another version (ensemble.py), so the remedy says that."""
    found = []
    for group in stale:
        n = len(group.runs)
        runs = f"{n} run{'s' if n > 1 else ''} of `{group.dataset}` {'were' if n > 1 else 'was'} made"
        listed = ", ".join(f"`{run.rel}`" for run in group.runs[:LISTED_RUNS])
        listed += f" and {n - LISTED_RUNS} more" if n > LISTED_RUNS else ""
        current = (
            f"the current data is {version_text(group.current.fingerprint, group.current.classes)}, "
            "that of the most recently finished run"
        )
        trained = sum(run.metrics.get("backbone") != ENSEMBLE for run in group.runs)
        them = ("them" if trained > 1 else "it") if trained == n else "each trained run"
        ensemble = (
            " An ensemble is not re-run: building ensembles (the report's `ensemble_k=`, or `python -m "
            "benchmark.ensemble`) removes it, and makes a new one once two rows are on the current data."
            if trained < n else ""
        )
        if changed := group.settings_changed:
            found.append(
                f"{WARNING} **{runs} with other dataset settings** ({', '.join(changed)}; "
                f"{version_text(group.version.fingerprint, group.version.classes)}; {current}): not ranked, "
                "pooled, compared or ensembled, since one leaderboard compares runs on one version of the "
                f"data. Give each data setup its own `dataset.name=` or `results_dir=`.{ensemble} "
                f"Set aside: {listed}."
            )
        else:
            rerun = (f" The same command re-runs {them} on the current data (a complete run whose data "
                     "changed is trained again)." if trained else "")
            found.append(
                f"{WARNING} **{runs} on another version of the data** "
                f"({version_text(group.version.fingerprint, group.version.classes)}; {current}): not ranked, "
                f"pooled, compared or ensembled.{rerun}{ensemble} Set aside: {listed}."
            )
    return found


def provenance(runs: list[Run], cfg: DictConfig, stale: Sequence[Stale] = ()) -> str:
    generated = dt.datetime.now(dt.UTC).strftime(TIME_FORMAT)
    finished = unique([utc(run.manifest.get("finished")) for run in runs])
    primary = metric(cfg.primary_metric)
    direction = "higher" if primary.higher_is_better else "lower"
    lines = [
        f"- generated: {generated} from {len(runs)} complete run(s), finished {finished[0]} … {finished[-1]}"
        + (f" ({n} more on another version of the data, not ranked)" if (n := sum(len(g.runs) for g in stale))
           else ""),
        f"- git commit: {', '.join(f'`{c}`' for c in unique([r.manifest.get('git_commit') for r in runs]))}",
        f"- machine: {'; '.join(unique([machine_name(run) for run in runs]))}",
        f"- train mode: {', '.join(unique([run.metrics.get('train_mode') for run in runs]))}",
        f"- ranked by: **{primary.name}** ({direction} is better, mean over seeds)",
    ]
    return "\n".join(lines)


def interval_note(settings: Settings) -> str:
    """What every number and interval means, stated once, with the settings the runs recorded."""
    percent = f"{settings.ci_level * 100:g}%"
    return (
        f"**How to read the numbers.** Each cell is the mean over the row's seeds of the per-seed test "
        f"metric, with its {percent} confidence interval `[low, high]` from a two-level bootstrap: each of "
        f"{settings.n_bootstrap} replicates resamples the test images (stratified by class; whole patients "
        "when the split has groups) and, independently, the row's seeds, so the interval includes both the "
        "test-set sampling error and the seed-to-seed spread (a row of one seed, or whose seeds predict "
        "identically, has only the first: named under its table). Both levels draw n - 1 of their n units "
        "(Rao and Wu's rescaled bootstrap: a mean's variance right with few patients or seeds). Every row of "
        "a dataset is scored on the same "
        f"image resamples. {EXACT_MARK}: the bootstrap was degenerate (every resample gave the same value, "
        "e.g. a tiny test set all right) and the interval is the exact Clopper-Pearson one (over patients "
        "when the split has groups); `(no CI)`: no "
        "interval can be estimated. One row per backbone and weights: the configuration with the lowest mean "
        "validation loss (the others are listed under *All configurations*); the test set never chooses. "
        f"ECE uses {settings.ece_bins} confidence bins; cost columns are means over seeds; train time = "
        "feature extraction (timed on seeds that passed every image they did not read from the cache "
        "through the network; where none did, seeds that copied features from other cache entries priced "
        "as all images at their measured forward throughput, without the build, tracing, decoding and "
        "cache writes a cold run also pays; else the seeds' own time) + head training."
    )


def dataset_facts(rows: list[Row]) -> str:
    runs = [run for row in rows for run in row.runs]
    classes = unique([", ".join(run.metrics["classes"]) for run in runs])
    splits = unique(
        [" / ".join(f"{k} {v}" for k, v in (run.metrics.get("split_sizes") or {}).items()) for run in runs]
    )
    fingerprints = unique(list(fingerprints_of(runs).values()))
    tests = {row.estimates.test for row in rows if row.estimates is not None and row.estimates.test}
    sizes = sorted({(len(t.files), t.n_groups) for t in tests}, key=str)
    noun = group_noun(rows)
    described = "; ".join(f"{n} images" + (f" of {g} {plural(noun)}" if g else "") for n, g in sizes)
    described = described or "unknown"
    seeds = sorted({len(row.runs) for row in rows if not row.is_ensemble})
    lines = [
        f"- classes: {'; '.join(classes)}",
        f"- split sizes: {'; '.join(splits)}",
        f"- test set: {described}; seeds per row: {', '.join(map(str, seeds)) or '—'}",
        f"- {'; '.join(unique([split_unit(run.metrics) for run in runs]))}",
        f"- data fingerprint: {', '.join(f'`{f}`' for f in fingerprints)}",
    ]
    skipped = max(int(run.metrics.get("skipped_images") or 0) for run in runs)
    if skipped:
        lines.append(f"- {skipped} unreadable image file(s) skipped (listed in each run's manifest.json)")
    return "\n".join(lines + duplicate_warnings(runs))


def mixed_data_warning(rows: list[Row]) -> list[str]:
    """Configurations of one dataset made on different splits (another split seed, dedupe=drop, other
    groups): their validation losses, which choose each backbone's row, and their test metrics are on
    different images, so neither the choice nor the ranking compares like with like. Runs with a data
    fingerprint never get here on two versions (load.py sets the others aside): this is for older runs."""
    tests = {row.estimates.test.files for row in rows if row.estimates is not None and row.estimates.test}
    sizes = {str(run.metrics.get("split_sizes")) for row in rows for run in row.runs if not row.is_ensemble}
    if len(tests) < 2 and len(sizes) < 2:
        return []
    return [
        f"\n{WARNING} **Runs on {max(len(tests), len(sizes))} different splits of this dataset:** the "
        "configurations compared on validation loss and the rows ranked here were not all scored on the "
        "same images. Keep one data setup per results_dir (or dataset name)."
    ]


def split_unit(metrics: dict) -> str:
    """ "split by patient (42 groups)" or the warning that images of one patient may sit in two splits."""
    unit, groups = metrics.get("split_by") or "image", metrics.get("split_groups")
    if unit == "image" or not groups:
        return "split by image — no groups given (images of one patient may sit in train and test)"
    shared = metrics.get("groups_in_several_splits")
    return (
        f"split by {unit} ({metrics.get('n_groups') or sum(groups.values())} {plural(unit)}: "
        + ", ".join(f"{k} {v}" for k, v in groups.items())
        + ")"
        + (f" — ⚠️ **{shared} {unit}(s) in more than one split** (dataset.group_overlap=warn): test "
           "metrics may be optimistic" if shared else "")
    )


def most_per_kind(runs: list[Run], key: str) -> dict[str, int]:
    """The largest count of each kind over the runs' `key` (a metrics.json dict of counts per kind)."""
    found: dict[str, int] = {}
    for run in runs:
        for kind, count in (run.metrics.get(key) or {}).items():
            found[kind] = max(found.get(kind, 0), int(count))
    return {kind: count for kind, count in found.items() if count}


def duplicate_warnings(runs: list[Run]) -> list[str]:
    """What the data audit found across splits: duplicates left in the data make test metrics optimistic;
    dropped ones are said; a shared file name or DICOM PatientID is a reason to look, not leakage."""
    lines = []
    leaks, hints = most_per_kind(runs, "cross_split_duplicates"), most_per_kind(runs, "cross_split_hints")
    leaks = {kind: n for kind, n in leaks.items() if kind in LEAK_KINDS}  # older runs counted hints too
    if leaks:
        described = ", ".join(f"{count} {kind}" for kind, count in leaks.items())
        lines.append(
            f"\n{WARNING} **Possible leakage:** the data audit found images shared across splits "
            f"({described}; see each run's audit.csv and audit.png): test metrics may be optimistic."
        )
    dropped = max(int(run.metrics.get("dropped_duplicates") or 0) for run in runs)
    if dropped and not leaks:
        lines.append(f"- {dropped} copies of images in an earlier split dropped before training "
                     "(dataset.dedupe=drop; listed in each run's manifest.json)")
    if hints:
        described = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in hints.items())
        lines.append(f"- to check: matches across splits by file name or DICOM PatientID ({described}; "
                     "audit.csv): different images can share them, but one patient in two splits inflates "
                     "test metrics")
    other = most_per_kind(runs, "duplicates_with_other_labels")
    if noise := sum(n for kind, n in other.items() if kind != "near"):
        lines.append(f"\n{WARNING} **Label noise:** {noise} pair(s) of one image (exact or the same DICOM "
                     "instance) carry different labels (each run's audit.csv): correct the labels or remove "
                     "a copy.")
    if near := other.get("near"):
        lines.append(f"- to check: {near} near-duplicate pair(s) carry different labels (audit.csv): a copy "
                     "filed under another class is label noise, neighbouring slices that differ are not")
    return lines


def more_test_units(rows: list[Row], units: str) -> str:
    """How this data's test split gets more of a class's images or patients: its split comes from the
    user's folders, a file's official split, or `dataset.split` (data/folder.py records which)."""
    recorded = (run.metrics.get("split_from") for row in rows for run in row.runs)
    split_from = next(filter(None, recorded), None)  # older runs, and ensembles of them, have none
    if split_from == "folders":
        return f"add {units} of that class to the test/ folder (your folders are the split)"
    if split_from == "official":
        return "the file's official test split cannot give them"
    return ("a larger test share (`dataset.split`) or another `dataset.split_seed` (a new data version: runs "
            "train again)")


def small_test_warnings(rows: list[Row], primary: str) -> list[str]:
    """A validation split of few cases, a class missing from a split, classes with fewer than MIN_CASES test
    cases, and intervals the bootstrap could not give: a warning
    when the ranking metric's is among them, else a note (an operating point's sensitivity of 1.0 in every
    resample says nothing about the ranking)."""
    found = []
    said = [few_validation_cases(run.metrics) for row in rows for run in row.runs]
    if few := next(filter(None, said), None):
        found.append(f"{WARNING} **Few validation cases:** {few}")
    absent = (absent_limits(run.metrics, run.manifest) for row in rows for run in row.runs)
    for sentence in next(filter(None, absent), []):
        found.append(f"{WARNING} **A class is missing from a split:** {sentence}")
    tests = [row.estimates.test for row in rows if row.estimates is not None and row.estimates.test]
    if tests:
        classes, test = rows[0].classes, tests[0]
        cases = unit_labels(test.labels, test.groups)  # with groups the bootstrap draws patients
        noun = group_noun(rows) or "image"  # the bootstrap's unit, as the runs name it
        unit = "test cases" if test.groups is None else f"test {plural(noun)}"
        counts = dict(zip(classes, np.bincount(cases, minlength=len(classes)), strict=True))
        small = [f"{name} ({counts[name]})" for name in small_classes(cases, classes, MIN_CASES)]
        if small:
            if test.single_unit == "group":
                intervals = " (no interval: see below)."
            elif test.single_unit:
                intervals = " (exact intervals for proportions only: see below)."
            else:
                intervals = (" and their intervals are wide: they rest on those few cases, and a percentile "
                             "interval of so few is rough (the rescaled bootstrap's variance is right, its "
                             f"shape need not be; the exact ones, {EXACT_MARK}, are conservative).")
            found.append(
                f"{WARNING} **Few {unit}:** {', '.join(small)} — fewer than {MIN_CASES} {unit}; that "
                f"class's sensitivity, AUROC and the macro metrics rest on a handful of them{intervals}"
            )
        if single := [name for name, count in counts.items() if count == 1]:  # bootstrap.single_unit_class
            found.append(
                f"{WARNING} **A class has a single test {noun}:** {', '.join(single)}. Every resample of the "
                "test set holds it, so no interval could show its variability: "
                + (f"proportions have exact intervals ({EXACT_MARK}), the other metrics none. "
                   if test.groups is None else "no metric has an interval (`(no CI)`). ")
                + "Differences between rows here are not evidence. For intervals, the test split needs "
                f"two or more of its {plural(noun)}: {more_test_units(rows, plural(noun))}, or leave the "
                "class out."
            )
    fallback = sorted(
        {
            name
            for row in rows
            if row.estimates is not None and row.estimates.test and not row.estimates.test.single_unit
            for name, interval in row.estimates.intervals.items()
            if interval.method not in BOOTSTRAPS
        }
    )
    if fallback:
        listed = f"{', '.join(fallback[:6])}{' …' if len(fallback) > 6 else ''}"
        found.append(
            f"{WARNING} **Test set too small to rank on:** the bootstrap was degenerate for {listed} (every "
            f"resample gave the same value); those intervals are exact ({EXACT_MARK}) or absent. "
            "Differences between rows here are not evidence."
            if primary in fallback else
            f"- the bootstrap was degenerate for {listed} (every resample gave the same value): those "
            f"intervals are exact ({EXACT_MARK}) or absent"
        )
    if problems := interval_problems(rows):
        found.append(f"{WARNING} **No intervals for** {'; '.join(problems)}.")
    return found


def interval_problems(rows: list[Row]) -> list[str]:
    """Each row without intervals, with why (its estimates' problem)."""
    return [
        f"{row.label}: {row.estimates.problem}" for row in rows if row.estimates and row.estimates.problem
    ]


def no_interval_notes(rows: list[Row]) -> list[str]:
    """Why a configuration not chosen shows `(no CI)` (the chosen rows' reasons are warned above)."""
    problems = interval_problems(rows)
    return [f"- no intervals for {'; '.join(problems)}"] if problems else []


def comparisons(rows: list[Row], cfg: DictConfig, settings: Settings) -> str:
    """#1 against every other row on the ranking metric (paired bootstrap) and on AUROC (DeLong, or the
    paired bootstrap over patients on a grouped test split)."""
    if len(rows) < 2:
        return "Only one row: nothing to compare."
    found = against_first(rows, cfg.primary_metric, settings.ci_level)
    alpha = 1 - settings.ci_level
    auroc = ""  # said only of tests the tables hold
    if grouped(rows[0]):
        whose = "AUROC: the same paired bootstrap, whose resamples" if found.auroc else "Its resamples"
        auroc = (f"{whose} draw whole patients/studies (DeLong's test would treat the images of one as "
                 "independent evidence). ")
    elif found.auroc or found.auroc_per_class:
        auroc = ("AUROC also by DeLong's test of the seed-mean AUROC, the trained seeds held fixed (a "
                 "narrower question than the rows' estimand, whose seed-to-seed spread it leaves out"
                 + ("; macro-AUROC itself is the ranking's test). " if cfg.primary_metric == "macro_auroc"
                    else "). "))
    parts = [
        f"#1 **{rows[0].label}** against every other row, on the same test images. "
        f"{metric(cfg.primary_metric).name}: paired two-level bootstrap (the replicates behind the "
        f"intervals). {auroc}"
        f"p-values are two-sided and Holm-corrected within each test over the {len(rows) - 1} "
        f"comparison(s); ✓ = Holm p < {alpha:g}. A bootstrap p at its resolution is shown as `< 1/B`. "
        "#1 is the row these test numbers ranked first, a choice no correction here accounts for: read its "
        "p-values as somewhat optimistic.",
        comparisons_table(found.ranking + found.auroc, alpha, cfg.digits) if found.ranking + found.auroc
        else "No row could be compared with #1 (the reasons below).",
    ]
    if found.auroc_per_class:
        parts += ["Per class, one-vs-rest (DeLong, the seeds held fixed; Holm over all class comparisons):"]
        parts += [comparisons_table(found.auroc_per_class, alpha, cfg.digits)]
    parts += [f"- not compared: {row}: {why}" for row, why in found.not_comparable]
    return "\n\n".join(parts)


def target_of(rows: list[Row]) -> str:
    targets = {
        (run.metrics.get("operating_points") or {}).get("target_sensitivity")
        for row in rows
        for run in row.runs
    }
    targets.discard(None)
    return ", ".join(f"{t:g}" for t in sorted(targets)) or "—"


def failed_section(failures: list[Failure]) -> str:
    if not failures:
        return "none"
    header = ["dataset", "backbone", "seed", "config", "error", "run directory"]
    body = [
        [f.dataset, f.backbone, str(f.seed), f.config_hash, f"{f.error_type}: {f.error}", f"`{f.rel}`"]
        for f in failures
    ]
    return markdown_table(header, body)


def skipped_section(skipped: list[Skipped]) -> str:
    return "\n".join(f"- `{s.rel}`: {s.reason}" for s in skipped) if skipped else "none"


def figure_links(figures: dict[str, tuple[Path, str]], results_dir: Path) -> str:
    """Relative links, so the page renders on GitHub and wherever results/ is copied."""
    return "\n\n".join(
        f"![{caption}]({path.relative_to(results_dir).as_posix()})" for path, caption in figures.values()
    )


def gradcam_links(rows: list[Row], results_dir: Path) -> str:
    """Each row's Grad-CAM panels, from its validation-best seed (made after a sweep, or by the run)."""
    links = []
    for row in rows:
        if row.is_ensemble:
            continue
        run = best_seed(row)
        if (results_dir / run.rel / "gradcam.png").exists():
            links.append(f"![Grad-CAM: {row.label}, seed {run.metrics['seed']}]({run.rel}/gradcam.png)")
    return "\n\n".join(links)


def regimes_and_sizes(rows: list[Row], cfg: DictConfig) -> list[str]:
    """The MedMNIST+-style comparisons, when the runs hold more than one regime or input size."""
    found = []
    name = metric(cfg.primary_metric).name

    def training_cost(row: Row) -> float:
        return mean_of(row, "training_s")

    def size(row: Row) -> str:
        return f"{row.image_size} px"

    by_regime = pivot_table(rows, lambda r: r.regime, training_cost, size, cfg.primary_metric, cfg.digits)
    if by_regime:
        found += [
            "### Regimes: kNN and linear probes, frozen head, fine-tuning",
            f"Test {name} of each backbone under each regime (columns by training cost), from the rows "
            "above: "
            "does training a head, or fine-tuning, pay off over a probe of the frozen features?",
            by_regime,
        ]
    by_size = pivot_table(rows, size, lambda r: r.image_size, lambda r: r.regime, cfg.primary_metric,
                          cfg.digits)
    if by_size:
        found += [
            "### Input sizes",
            f"Test {name} of each backbone at each input size; the cost of each size is in the table "
            "above (latency, throughput, train time).",
            by_size,
        ]
    return found


def failed_seeds(rows: list[Row], failed: Sequence[Failure]) -> list[str]:
    """Seeds of a ranked row that failed: its mean stands for fewer seeds than the sweep asked for."""
    keys = {(row.backbone, row.config_hash) for row in rows}
    missing = [f"{f.backbone} seed {f.seed}" for f in failed if (f.backbone, f.config_hash) in keys]
    if not missing:
        return []
    return [f"- failed, so not in the numbers above: {', '.join(missing)} (see *Failed runs*)"]


def row_notes(rows: list[Row]) -> list[str]:
    """Under the ranked table, one line each: an ensemble's members, the paper preset each row's
    configuration was run under, and for fine-tuned rows which phase's weights were tested (absent when no
    row has them)."""
    by_preset: dict[str, list[str]] = {}
    for row in rows:
        if (preset := preset_markdown(row)) is not None:
            by_preset.setdefault(preset, []).append(row.label)
    trained = [row for row in rows if not row.is_ensemble]
    lines = [f"- {row.label}: the mean of the test probabilities of {', '.join(members)} (the rows with the "
             "lowest validation loss, each averaged over its seeds)"
             for row in rows if (members := row.members)]
    if by_preset:
        named = [f"{preset}: " + ("every row" if len(labels) == len(trained) else ", ".join(labels))
                 for preset, labels in by_preset.items()]
        lines.append(f"- paper preset (`experiment=`, conf/experiment/): {'; '.join(named)}")
    if seedless := [row.label for row in trained if row.estimates and not row.estimates.seeds_vary]:
        named = "every row" if len(seedless) == len(trained) else ", ".join(seedless)
        lines.append("- intervals without a seed-to-seed spread (one seed, or seeds whose test predictions "
                     "are identical, as a probe's fitted deterministically on one extractor's features; "
                     f"their seeds count as one training): {named}")
    phases = [f"{row.label} {found}" for row in rows if (found := best_phase_text(row)) is not None]
    if phases:
        lines.append("- fine-tuned rows, the phase whose weights were tested (the lower validation loss of "
                     f"the head warm-up's and the fine-tuning's best epochs): {'; '.join(phases)}")
    return lines


def calibration_notes(rows: list[Row]) -> list[str]:
    """The paragraphs under the calibration table: why it has no temperatures, or what a temperature at
    bound means (never both: a fit at its bound is a recorded temperature)."""
    if not any(temperature(run) is not None for row in rows for run in row.runs):
        return [
            "No run recorded a temperature: they were made before calibration was part of a run "
            "(`force=true` re-runs them)."
        ]
    return bound_note(rows)


def bound_note(rows: list[Row]) -> list[str]:
    """What "at bound" in the temperature column means, once, when a seed's fit stopped at its bound."""
    if not any(bounds_hit(row) for row in rows):
        return []
    return [
        "A temperature *at bound* is not an estimate: the fit stopped at an end of its search range, so the "
        "validation loss was still falling beyond it (e.g. validation predictions no better than chance: "
        "T → ∞). Those seeds are counted, not averaged into the mean beside them; the calibrated columns "
        "still apply each seed's own fitted temperature, one at its bound included, which `predict "
        "calibrated=true` refuses to apply."
    ]


def dataset_section(
    dataset: str,
    rows: list[Row],
    others: dict[tuple[str, str, str], list[Row]],
    figures: str,
    cfg: DictConfig,
    settings: Settings,
    failed: Sequence[Failure] = (),
) -> str:
    parts = [
        f"## {dataset}",
        dataset_facts(rows),
        *mixed_data_warning([*rows, *(row for family in others.values() for row in family)]),
        *small_test_warnings(rows, cfg.primary_metric),
        main_table(rows, cfg.primary_metric, cfg.digits),
        *(["\n".join(notes)] if (notes := row_notes(rows) + failed_seeds(rows, failed)) else []),
        *regimes_and_sizes(rows, cfg),
        "### #1 against every other row",
        comparisons(rows, cfg, settings),
        "### Per class",
        per_class_table(rows, cfg.digits),
        "### Calibration: temperature scaling fitted on validation",
        "The test ECE, Brier score and log loss of the probabilities as trained and after dividing the "
        "logits by a temperature fitted on the validation split (it changes confidence, never the "
        "predicted class).",
        calibration_table(rows, cfg.digits),
        *calibration_notes(rows),
    ]
    operating = operating_points_table(rows, cfg.digits)
    if operating:
        parts += [
            "### Operating points: thresholds chosen on validation, applied to test",
            f"How a screening model is judged. Per class one-vs-rest (binary tasks too), the "
            f"threshold on its probability that reaches sensitivity {target_of(rows)} on validation, and the "
            "one maximising Youden's J (sensitivity + specificity − 1) on validation; test rates at each. "
            "Each seed applies its own threshold: the column shows their mean, a value no single model "
            "uses, and the rates are the means of each seed's rates at its own.",
            operating,
        ]
    if others:
        parts += [
            "### All configurations",
            "Every configuration run for a backbone, ordered by mean validation loss; the first (✓) is the "
            "leaderboard's row. The test metric is shown for information only: choosing by it would be "
            "model selection on the test set.",
            configurations_table(others, cfg.primary_metric, cfg.digits),
            *no_interval_notes([row for family in others.values() for row in family[1:]]),
        ]
    parts += ["### Figures", figures]
    return "\n\n".join(parts)


def document(
    collection: Collection,
    ranked: dict[str, list[Row]],
    others: dict[str, dict[tuple[str, str, str], list[Row]]],
    figures: dict[str, str],
    cfg: DictConfig,
    settings: Settings,
) -> str:
    """The whole page; `figures` holds each dataset's block of figure links."""
    parts = [
        "# medbench leaderboard",
        *stale_banners(collection.stale),
        *banners(collection.runs, ranked),
        provenance(collection.runs, cfg, collection.stale),
    ]
    parts.append(interval_note(settings))
    parts += [
        dataset_section(name, rows, others.get(name, {}), figures[name], cfg, settings,
                        [f for f in collection.failed if f.dataset == name])
        for name, rows in ranked.items()
    ]
    results_dir = Path(cfg.results_dir)
    every_row = [row for rows in ranked.values() for row in rows]
    listed = {id(row) for row in every_row}
    every_row += [row for by_key in others.values() for rows in by_key.values() for row in rows
                  if id(row) not in listed]  # a site scored on a configuration validation did not choose
    if external := external_section(every_row, results_dir, cfg.primary_metric, cfg.digits):
        parts += ["## External validation", external]
    if summaries := search_summaries(results_dir):
        parts += ["## Hyperparameter searches", searches_section(summaries, collection.runs, cfg.digits)]
    parts += ["## Failed runs", failed_section(collection.failed)]
    parts += ["## Skipped / incomplete run directories", skipped_section(collection.skipped)]
    return "\n\n".join(parts) + "\n"
