"""leaderboard.md: provenance, warnings a reader must not miss, the tables, the significance test, figures."""

import datetime as dt
from pathlib import Path

from omegaconf import DictConfig

from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import metric
from benchmark.report.load import Collection, Failure, Run, Skipped
from benchmark.report.paired import NotComparable, p_text, paired_bootstrap, verdict
from benchmark.report.rows import Row, per_class_means
from benchmark.report.tables import BOOTSTRAP_MARK, main_table, markdown_table, per_class_table

WARNING = "> ⚠️"
TIME_FORMAT = "%Y-%m-%d %H:%M UTC"


def unique(values: list[object]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")}) or ["unknown"]


def utc(stamp: object) -> str | None:
    """An ISO time from a manifest as a readable UTC minute; None when absent or unparsable."""
    try:
        return dt.datetime.fromisoformat(str(stamp)).astimezone(dt.UTC).strftime(TIME_FORMAT)
    except ValueError:
        return None


def machine_name(run: Run) -> str:
    machine = run.manifest.get("machine") or {}
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    return f"{machine.get('cpu', 'unknown CPU')} ({machine.get('cpu_count', '?')} cores), {gpus}"


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
            f"{', '.join(other)}. Random init means an untrained feature extractor; compare them with care."
        )
    return found


def provenance(runs: list[Run], cfg: DictConfig) -> str:
    generated = dt.datetime.now(dt.UTC).strftime(TIME_FORMAT)
    finished = unique([utc(run.manifest.get("finished")) for run in runs])
    primary = metric(cfg.primary_metric)
    direction = "higher" if primary.higher_is_better else "lower"
    lines = [
        f"- generated: {generated} from {len(runs)} complete run(s), finished {finished[0]} … {finished[-1]}",
        f"- git commit: {', '.join(f'`{c}`' for c in unique([r.manifest.get('git_commit') for r in runs]))}",
        f"- machine: {'; '.join(unique([machine_name(run) for run in runs]))}",
        f"- train mode: {', '.join(unique([run.metrics.get('train_mode') for run in runs]))}",
        f"- ranked by: **{primary.name}** ({direction} is better, mean over seeds)",
    ]
    return "\n".join(lines)


def interval_note(settings: Settings) -> str:
    """What the intervals are, with the settings the runs recorded (never the report's own)."""
    percent = f"{settings.ci_level * 100:g}%"
    return (
        f"Cells read `mean [low, high]`, the {percent} confidence interval: a t-interval over seeds "
        f"(mean ± t·sd/√n, clipped to [0, 1]) when a row has several seeds; {BOOTSTRAP_MARK} marks a single "
        f"run's bootstrap interval over test images ({settings.n_bootstrap} resamples). ECE "
        f"({settings.ece_bins} confidence bins) and the cost columns are means over seeds; "
        "train time = feature extraction (timed where it was not read from the cache) + head training."
    )


def dataset_facts(rows: list[Row]) -> str:
    runs = [run for row in rows for run in row.runs]
    classes = unique([", ".join(run.metrics["classes"]) for run in runs])
    splits = unique(
        [" / ".join(f"{k} {v}" for k, v in (run.metrics.get("split_sizes") or {}).items()) for run in runs]
    )
    fingerprints = unique([(run.manifest.get("dataset") or {}).get("fingerprint") for run in runs])
    lines = [
        f"- classes: {'; '.join(classes)}",
        f"- split sizes: {'; '.join(splits)}",
        f"- {'; '.join(unique([split_unit(run.metrics) for run in runs]))}",
        f"- data fingerprint: {', '.join(f'`{f}`' for f in fingerprints)}",
    ]
    skipped = max(int(run.metrics.get("skipped_images") or 0) for run in runs)
    if skipped:
        lines.append(f"- {skipped} unreadable image file(s) skipped (listed in each run's manifest.json)")
    return "\n".join(lines + duplicate_warnings(runs))


def split_unit(metrics: dict) -> str:
    """ "split by patient (42 groups)" or the warning that images of one patient may sit in two splits."""
    unit, groups = metrics.get("split_by") or "image", metrics.get("split_groups")
    if unit == "image" or not groups:
        return "split by image — no groups given (images of one patient may sit in train and test)"
    return (
        f"split by {unit} ({sum(groups.values())} {unit}s: "
        + ", ".join(f"{k} {v}" for k, v in groups.items())
        + ")"
    )


def duplicate_warnings(runs: list[Run]) -> list[str]:
    """Cross-split duplicates the data audit found: they make test metrics optimistic."""
    found: dict[str, int] = {}
    for run in runs:
        for kind, count in (run.metrics.get("cross_split_duplicates") or {}).items():
            found[kind] = max(found.get(kind, 0), int(count))
    if not any(found.values()):
        return []
    described = ", ".join(f"{count} {kind}" for kind, count in found.items() if count)
    return [
        f"\n{WARNING} **Possible leakage:** the data audit found images shared across splits ({described}; "
        "see each run's audit.csv and audit.png): test metrics may be optimistic."
    ]


def significance(rows: list[Row], cfg: DictConfig, settings: Settings) -> str:
    """Is #1 better than #2 on the ranking metric, beyond what resampling the test set would give?"""
    if len(rows) < 2:
        return "**Significance:** skipped: only one row, nothing to compare."
    first, second = rows[0], rows[1]
    title = f"**Significance, #1 {first.label} vs #2 {second.label} on {metric(cfg.primary_metric).name}:**"
    try:
        found = paired_bootstrap(first, second, settings, cfg.primary_metric)
    except NotComparable as error:
        return f"{title} not comparable: {error}."
    percent, d = f"{settings.ci_level * 100:g}%", cfg.digits
    return (
        f"{title} difference (#1 − #2) {found.observed:+.{d}f} ({percent} CI {found.low:+.{d}f} to "
        f"{found.high:+.{d}f}), {p_text(found)} (paired bootstrap: {found.n_resamples} "
        f"resamples of the same {found.n_test} test images, probabilities averaged over seeds). "
        f"{verdict(found, 1 - settings.ci_level)}."
    )


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


def dataset_section(dataset: str, rows: list[Row], figures: str, cfg: DictConfig, settings: Settings) -> str:
    return "\n\n".join(
        [
            f"## {dataset}",
            dataset_facts(rows),
            main_table(rows, cfg.primary_metric, settings.ci_level, cfg.digits),
            significance(rows, cfg, settings),
            "### Per class (mean over seeds)",
            per_class_table(per_class_means(rows), cfg.digits),
            "### Figures",
            figures,
        ]
    )


def document(
    collection: Collection,
    ranked: dict[str, list[Row]],
    figures: dict[str, str],
    cfg: DictConfig,
    settings: Settings,
) -> str:
    """The whole page; `figures` holds each dataset's block of figure links."""
    parts = ["# medbench leaderboard", *banners(collection.runs, ranked), provenance(collection.runs, cfg)]
    parts.append(interval_note(settings))
    parts += [dataset_section(name, rows, figures[name], cfg, settings) for name, rows in ranked.items()]
    parts += ["## Failed runs", failed_section(collection.failed)]
    parts += ["## Skipped / incomplete run directories", skipped_section(collection.skipped)]
    return "\n\n".join(parts) + "\n"
