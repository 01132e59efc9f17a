"""leaderboard.csv (one row per run, every seed) and the markdown tables of leaderboard.md."""

import math

import pandas as pd

from benchmark.metrics.table import BY_KEY, HEADLINE
from benchmark.report.load import Run, number
from benchmark.report.rows import PER_CLASS_SHOWN, Estimate, Row, estimate, mean_of, training_time

NOT_SCALAR = ("classes", "per_class", "confusion_matrix", "split_sizes", "evaluation")
BOOTSTRAP_MARK = "†"


def run_record(run: Run, label: str) -> dict:
    """Every scalar of metrics.json, split sizes and per-class metrics as flat columns, plus provenance."""
    metrics = run.metrics
    record = {key: metrics[key] for key in ("dataset", "backbone", "seed", "config_hash", "weights_used")} | {
        "row": label
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


def leaderboard_frame(ranked: dict[str, list[Row]]) -> pd.DataFrame:
    """One row per run, datasets in order, rows in rank order, seeds in order."""
    return pd.DataFrame.from_records(
        [run_record(run, row.label) for rows in ranked.values() for row in rows for run in row.runs]
    )


def cell(value: object) -> str:
    """Markdown-safe table cell: a `|` or newline in an error message must not break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in line) + " |" for line in body]
    return "\n".join(lines)


def fmt(value: float, digits: int) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_estimate(found: Estimate, digits: int) -> str:
    """`mean [low, high]`; a single run's bootstrap interval is marked †, no interval is just the mean."""
    if math.isnan(found.mean):
        return "—"
    if found.source == "none":
        return fmt(found.mean, digits)
    mark = BOOTSTRAP_MARK if found.source == "bootstrap" else ""
    return f"{found.mean:.{digits}f} [{found.low:.{digits}f}, {found.high:.{digits}f}]{mark}"


def interval_columns(primary: str) -> list[str]:
    """The headline metrics, plus the primary metric when it is another one (ECE has its own column)."""
    headline = [m.key for m in HEADLINE]
    return [*headline, *([] if primary in (*headline, "ece") else [primary])]


def main_table(rows: list[Row], primary: str, level: float, digits: int) -> str:
    """The ranked leaderboard of one dataset: quality with intervals, then calibration and cost."""
    metrics = interval_columns(primary)
    names = [f"**{BY_KEY[m].name}**" if m == primary else BY_KEY[m].name for m in metrics]
    ece_name = "**ECE**" if primary == "ece" else "ECE"
    header = ["rank", "backbone", "weights", *names, ece_name, "params (M)", "size (MB)"]
    header += ["latency (ms/img)", "throughput (img/s)", "train time (s)", "epochs", "seeds"]
    body = []
    for position, row in enumerate(rows, start=1):
        body.append(
            [
                str(position),
                row.label,
                row.weights,
                *(fmt_estimate(estimate(row, m, level), digits) for m in metrics),
                fmt(mean_of(row, "ece"), digits),
                fmt(mean_of(row, "params_total") / 1e6, 2),
                fmt(mean_of(row, "model_size_mb"), 1),
                fmt(mean_of(row, "latency_ms"), 2),
                fmt(mean_of(row, "throughput_ips"), 0),
                fmt(training_time(row), 1),
                fmt(mean_of(row, "epochs_run"), 1).removesuffix(".0"),
                str(len(row.runs)),
            ]
        )
    return markdown_table(header, body)


def per_class_table(frame: pd.DataFrame, digits: int) -> str:
    """Long format (one line per row and class), so datasets with many classes stay readable."""
    header = ["backbone", "class", *(m.name for m in PER_CLASS_SHOWN), "test support"]
    body = [
        [
            record["row"],
            record["class"],
            *(fmt(record[m.key], digits) for m in PER_CLASS_SHOWN),
            fmt(number(record, "support"), 0),
        ]
        for record in frame.to_dict("records")
    ]
    return markdown_table(header, body)
