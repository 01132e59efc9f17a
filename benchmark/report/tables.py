"""leaderboard.csv (one line per row: the estimand and its interval), runs.csv (one line per run) and the
markdown tables of leaderboard.md."""

import math
from collections.abc import Callable, Sequence

import pandas as pd

from benchmark.data.groups import plural
from benchmark.metrics.estimands import CLOPPER_PEARSON_FALLBACK, DEGENERATE, Interval, units_of
from benchmark.metrics.table import BY_KEY, HEADLINE
from benchmark.report.estimates import CALIBRATED_KEYS, RATES, RULE_NAMES, RULES
from benchmark.report.load import Run
from benchmark.report.paired import Comparison, p_text, significant
from benchmark.report.rows import (
    PER_CLASS_SHOWN,
    PHASES,
    Row,
    best_phases,
    bounds_hit,
    class_mean,
    estimate,
    estimated_temperatures,
    group_rows,
    mean_of,
    mean_temperature,
    preset_of,
    presets,
    seed_counts,
    training_time,
)
from benchmark.report.versions import Stale

NOT_SCALAR = (
    "classes",
    "per_class",
    "confusion_matrix",
    "split_sizes",
    "evaluation",
    "calibration",
    "operating_points",
)
EXACT_MARK = "‡"


CURRENT, SET_ASIDE = "current", "set_aside"  # runs.csv's status of a run: on its dataset's current data?


def run_record(run: Run, label: str, set_aside: str | None = None) -> dict:
    """Every scalar of metrics.json, split sizes and per-class metrics as flat columns, plus provenance;
    `set_aside`: why the run is in no leaderboard number (versions.py), None for a run on current data."""
    metrics = run.metrics
    record = {key: metrics[key] for key in ("dataset", "backbone", "seed", "config_hash", "weights_used")} | {
        "row": label, "status": SET_ASIDE if set_aside else CURRENT, "set_aside_reason": set_aside,
    }
    record |= {
        key: value
        for key, value in metrics.items()
        if key not in record
        and key not in NOT_SCALAR
        and (value is None or isinstance(value, int | float | str))
    }
    record |= {f"split_{name}": size for name, size in (metrics.get("split_sizes") or {}).items()}
    record |= {f"evaluation_{key}": value for key, value in metrics["evaluation"].items()}
    for name in metrics["classes"]:
        record |= {f"{key}_{name}": value for key, value in metrics["per_class"][name].items()}
    record |= {
        "run_dir": run.rel,
        "git_commit": run.manifest.get("git_commit"),
        "finished": run.manifest.get("finished"),
    }
    return record


def runs_frame(ranked: dict[str, list[Row]], stale: Sequence[Stale] = ()) -> pd.DataFrame:
    """runs.csv: one line per run, datasets in order, rows in rank order, seeds in order; then the runs set
    aside as on another version of their dataset's data, with why (status, set_aside_reason): listed, so
    the CSV holds every complete run, but in no leaderboard number."""
    current = [run_record(run, row.label) for rows in ranked.values() for row in rows for run in row.runs]
    aside = [
        run_record(run, row.label, group.reason)
        for group in stale
        for rows in group_rows(list(group.runs)).values()
        for row in rows
        for run in row.runs
    ]
    return pd.DataFrame.from_records(current + aside)


def row_record(row: Row, rank: int | None, chosen: bool) -> dict:
    """One leaderboard.csv line: the row's identity, its test set, and every estimate with its interval."""
    found = row.estimates
    test = found.test if found is not None else None
    record = {
        "dataset": row.dataset,
        "rank": rank,
        "row": row.label,
        "backbone": row.backbone,
        "regime": row.regime,
        "image_size": row.image_size,
        "config_hash": row.config_hash,
        "members": "; ".join(row.members) or None,  # an ensemble's rows
        "experiment": ",".join(presets(row)) or None,
        "experiment_seeds": sum(preset_of(run) is not None for run in row.runs),
        "weights_used": row.weights,
        # what the header says of the data, on every line a script reads: synthetic, and the split's unit
        "synthetic_data": any(bool(run.metrics.get("synthetic_data")) for run in row.runs),
        "split_by": row.runs[0].metrics.get("split_by") or "image",
        "chosen_on_validation": chosen,
        **best_phase_columns(row),
        "n_seeds": len(row.runs),
        "n_test": None if test is None else len(test.files),
        "n_test_groups": None if test is None else test.n_groups,
        "best_val_loss": mean_of(row, "best_val_loss"),
        "estimates_problem": None if found is None else found.problem,
    }
    for name, interval in ({} if found is None else found.intervals).items():
        record |= {
            name: interval.estimate,
            f"{name}_ci_low": interval.low,
            f"{name}_ci_high": interval.high,
            f"{name}_ci_method": interval.method,
            f"{name}_ci_valid": interval.n_valid,
        }
    record |= {} if found is None else found.means
    record["temperature"] = mean_temperature(row)  # from metrics.json: rows without predictions have it too
    record["temperature_seeds_at_bound"] = sum(bounds_hit(row).values())
    for key in ("params_total", "model_size_mb", "latency_ms", "throughput_ips", "epochs_run"):
        record[key] = mean_of(row, key)
    record["train_time_s"] = training_time(row)
    return record


def best_phase_columns(row: Row) -> dict[str, int | None]:
    """`best_phase_<phase>_seeds`: how many seeds' tested weights came from each fine-tuning phase (PHASES),
    as numbers a script can read; None for rows that are not fine-tuned."""
    found = best_phases(row)
    return {f"best_phase_{phase}_seeds": found.count(phase) if found else None for phase in PHASES}


def leaderboard_frame(ranked: dict[str, list[Row]], others: dict[str, list[Row]]) -> pd.DataFrame:
    """leaderboard.csv: one line per row (the estimand: mean over seeds with its interval); the rows not
    chosen on validation follow with an empty rank."""
    records = [
        row_record(row, position, True)
        for rows in ranked.values()
        for position, row in enumerate(rows, start=1)
    ]
    records += [row_record(row, None, False) for rows in others.values() for row in rows]
    return pd.DataFrame.from_records(records)


def cell(value: object) -> str:
    """Markdown-safe table cell: a `|` or newline in an error message must not break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in line) + " |" for line in body]
    return "\n".join(lines)


def fmt(value: float, digits: int) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_estimate(found: Interval, digits: int) -> str:
    """`mean [low, high]`; an exact fallback interval is marked ‡; no interval at all says so."""
    if math.isnan(found.estimate):
        return "—"
    if found.method == DEGENERATE or math.isnan(found.low):
        return f"{found.estimate:.{digits}f} (no CI)"
    mark = EXACT_MARK if found.method == CLOPPER_PEARSON_FALLBACK else ""
    return f"{found.estimate:.{digits}f} [{found.low:.{digits}f}, {found.high:.{digits}f}]{mark}"


def interval_columns(primary: str) -> list[str]:
    """The headline metrics, plus the primary metric when it is another one (ECE has its own column)."""
    headline = [m.key for m in HEADLINE]
    return [*headline, *([] if primary in (*headline, "ece") else [primary])]


def ece_cell(row: Row, primary: str, digits: int) -> str:
    """ECE's own column: with its interval when it is the ranking metric."""
    found = estimate(row, "ece")
    return fmt_estimate(found, digits) if primary == "ece" else fmt(found.estimate, digits)


def main_table(rows: list[Row], primary: str, digits: int) -> str:
    """The ranked leaderboard of one dataset: quality with intervals, then calibration and cost."""
    metrics = interval_columns(primary)
    names = [f"**{BY_KEY[m].name}**" if m == primary else BY_KEY[m].name for m in metrics]
    ece_name = "**ECE**" if primary == "ece" else "ECE"
    header = ["rank", "backbone", "regime", "weights", *names, ece_name, "params (M)", "size (MB)"]
    header += ["latency (ms/img)", "throughput (img/s)", "train time (s)", "epochs run", "seeds"]
    body = []
    for position, row in enumerate(rows, start=1):
        body.append(
            [
                str(position),
                row.label,
                "—" if row.is_ensemble else row.regime,
                row.weights,
                *(fmt_estimate(estimate(row, m), digits) for m in metrics),
                ece_cell(row, primary, digits),
                fmt(mean_of(row, "params_total") / 1e6, 2),
                fmt(mean_of(row, "model_size_mb"), 1),
                fmt(mean_of(row, "latency_ms"), 2),
                fmt(mean_of(row, "throughput_ips"), 0),
                fmt(training_time(row), 1),
                fmt(mean_of(row, "epochs_run"), 1).removesuffix(".0"),
                row.seeds_text,
            ]
        )
    return markdown_table(header, body)


def group_noun(rows: list[Row]) -> str | None:
    """What the rows' test groups are ("patient"), None where their test split has none."""
    tests = [row.estimates.test for row in rows if row.estimates is not None and row.estimates.test]
    if not any(test.groups is not None for test in tests):
        return None
    nouns = [row.runs[0].metrics.get("split_by") for row in rows]
    return next((noun for noun in nouns if noun and noun != "image"), "group")


def class_groups_suffix(row: Row, name: str) -> str:
    """A class's test groups (patients) in the row's test split, "" where it has none."""
    test = row.estimates.test if row.estimates is not None else None
    if test is None or test.groups is None:
        return ""
    return f" ({units_of(test.groups, test.labels == row.classes.index(name))})"


def per_class_table(rows: list[Row], digits: int) -> str:
    """Long format (one line per row and class), so datasets with many classes stay readable; the test
    cases are images, with their patients beside them where the split has groups (the bootstrap's unit)."""
    noun = group_noun(rows)
    header = ["backbone", "class", *(m.name for m in PER_CLASS_SHOWN),
              f"test images ({plural(noun)})" if noun else "test images"]
    body = []
    for row in rows:
        support = row.runs[0].metrics["per_class"]
        for name in row.classes:
            body.append(
                [
                    row.label,
                    name,
                    *(
                        fmt_estimate(estimate(row, f"{m.key}_{name}"), digits)
                        if m.resampled is not None
                        else fmt(class_mean(row, m.key, name), digits)
                        for m in PER_CLASS_SHOWN
                    ),
                    str(support.get(name, {}).get("support", "—")) + class_groups_suffix(row, name),
                ]
            )
    return markdown_table(header, body)


def comparisons_table(comparisons: list[Comparison], alpha: float, digits: int) -> str:
    """#1 against each row: difference (#1 − row) with its CI, p and Holm-adjusted p, and a mark where
    the adjusted p is below `alpha`."""
    header = ["#1 vs", "metric", "test", "difference (#1 − row)", "CI", "p", "Holm p", "significant"]
    body = [
        [
            c.second,
            BY_KEY[c.metric].name if c.metric in BY_KEY else c.metric,
            c.method,
            f"{c.observed:+.{digits}f}",
            f"[{c.low:+.{digits}f}, {c.high:+.{digits}f}]",
            p_text(c),
            ("≤ " if c.at_floor else "") + p_beside(c.p_adjusted, alpha),
            "✓" if significant(c, alpha) else "",
        ]
        for c in comparisons
    ]
    return markdown_table(header, body)


def p_beside(p_value: float, alpha: float) -> str:
    """A p-value in two significant digits, or more where two would read on the other side of `alpha`
    than the mark beside it (0.0496 printed "0.05" next to ✓, which means below 0.05)."""
    if not math.isfinite(p_value):
        return f"{p_value:.2g}"
    for digits in (2, 3, 4, 6):
        text = f"{p_value:.{digits}g}"
        if (float(text) < alpha) == (p_value < alpha):
            return text
    return f"< {alpha:g}"  # closer below alpha than six digits tell


def bound_text(bound: float) -> str:
    """`≥ 20` or `≤ 0.05`: a fit that stopped at an end of its search range is at least, or at most, it."""
    return f"≥ {bound:g}" if bound > 1 else f"≤ {bound:g}"


def temperature_cell(row: Row) -> str:
    """The mean fitted temperature of the seeds whose fit is an estimate; a seed whose fit stopped at its
    bound is shown as that bound with a count, never averaged in (rows.estimated_temperatures)."""
    n = len(row.runs)
    estimated = len(estimated_temperatures(row))
    hits = bounds_hit(row)
    parts = []
    if estimated:
        mean = fmt(mean_temperature(row), 2)
        parts.append(mean if estimated == n else f"{mean} ({estimated}/{n} seeds)")
    parts += [f"{bound_text(bound)} at bound ({k}/{n} seeds)" for bound, k in sorted(hits.items())]
    return "; ".join(parts) or "—"


def configuration_text(row: Row) -> str:
    preset = preset_markdown(row)
    return f"`{row.config_hash}`" + (f" (preset {preset})" if preset else "")


def preset_markdown(row: Row) -> str | None:
    """The row's paper preset, quoted; with counts when only some seeds ran under it (a configuration run
    both with and without its preset is one config hash). None when no seed did."""
    found = [preset_of(run) for run in row.runs]
    if not any(found):
        return None
    if len(set(found)) == 1:
        return f"`{found[0]}`"
    return seed_counts([f"`{name}`" if name else "no preset" for name in found], len(found))


def calibration_table(rows: list[Row], digits: int) -> str:
    """Test ECE, Brier score and log loss before and after temperature scaling fitted on validation."""
    header = ["backbone", "temperature"]
    for key in CALIBRATED_KEYS:
        header += [f"{BY_KEY[key].name}", f"{BY_KEY[key].name} calibrated"]
    body = []
    for row in rows:
        line = [row.label, temperature_cell(row)]
        for key in CALIBRATED_KEYS:
            line += [
                fmt_estimate(estimate(row, key), digits),
                fmt_estimate(estimate(row, f"{key}_calibrated"), digits),
            ]
        body.append(line)
    return markdown_table(header, body)


def operating_points_table(rows: list[Row], digits: int) -> str:
    """Per row, class and rule: the validation-chosen threshold (mean over
    seeds) and the test sensitivity, specificity, PPV and NPV it gives."""
    header = ["backbone", "class", "threshold rule", "threshold (seeds' mean)", "sensitivity", "specificity",
              "PPV", "NPV"]
    body = []
    for row in rows:
        means = row.estimates.means if row.estimates is not None else {}
        for name in row.classes:
            for rule in RULES:
                if f"threshold_{rule}_{name}" not in means:
                    continue
                body.append(
                    [
                        row.label,
                        name,
                        RULE_NAMES[rule],
                        fmt(means[f"threshold_{rule}_{name}"], 3),
                        *(fmt_estimate(estimate(row, f"{rate}_at_{rule}_{name}"), digits) for rate in RATES),
                    ]
                )
    return markdown_table(header, body) if body else ""


def configurations_table(
    families: dict[tuple[str, str, str], list[Row]], primary: str, digits: int
) -> str:
    """Every configuration of a backbone, ordered by mean validation loss (what chose the leaderboard's
    row); the test metric is shown for information and was not used to choose."""
    header = [
        "backbone",
        "regime, size",
        "weights",
        "configuration",
        "validation loss",
        "chosen",
        f"test {BY_KEY[primary].name}",
        "seeds",
    ]
    body = []
    for (backbone, regime, _), members in families.items():
        for position, row in enumerate(members):
            body.append(
                [
                    backbone,
                    regime,
                    row.weights,  # the family's weights, with this configuration's preprocessing
                    configuration_text(row),
                    fmt(mean_of(row, "best_val_loss"), digits),
                    "✓" if position == 0 else "",
                    fmt_estimate(estimate(row, primary), digits),
                    str(len(row.runs)),
                ]
            )
    return markdown_table(header, body)


def pivot_table(
    rows: list[Row],
    across: Callable[[Row], str],
    order: Callable[[Row], float],
    down: Callable[[Row], str],
    primary: str,
    digits: int,
) -> str | None:
    """Backbones (and `down`, the other setting) down, each value of `across` (regime, input size) in a
    column, columns by `order` (the smallest of their rows'): the primary metric with its interval, the
    rows' own numbers. None when every row has the same `across` value (nothing to compare)."""
    rows = [row for row in rows if not row.is_ensemble]
    first: dict[str, float] = {}
    for row in rows:
        first[across(row)] = min(first.get(across(row), math.inf), order(row))
    if len(first) < 2:
        return None
    values = sorted(first, key=lambda value: (first[value], value))
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in rows:
        cells.setdefault((row.backbone, down(row), row.weights), {})[across(row)] = fmt_estimate(
            estimate(row, primary), digits)
    body = [[backbone, other, weights, *(found.get(value, "—") for value in values)]
            for (backbone, other, weights), found in sorted(cells.items())]
    return markdown_table(["backbone", "setting", "weights", *values], body)
