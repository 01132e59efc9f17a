"""The "Hyperparameter searches" table: each Optuna study's best configuration, as chosen on validation."""

import json
from pathlib import Path


def search_summaries(results_dir: Path) -> list[dict]:
    """Every study summary the searches wrote (<results_dir>/search/<study>.json); unreadable ones skipped."""
    found = []
    for path in sorted((results_dir / "search").glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def searches_section(summaries: list[dict], results_dir: Path, digits: int) -> str:
    """One line per study: trials finished of all, the best validation value and its parameters, and a
    link to its run (which the leaderboard lists among the backbone's configurations)."""
    lines = [
        "Each study optimised a validation metric of its backbone (never a test metric); its trials are "
        "ordinary runs, listed under *All configurations* of their dataset.",
        "",
        "| study | trials finished / run | metric (validation), direction | best | parameters | run |",
        "|---|---|---|---|---|---|",
    ]
    for study in summaries:
        best = study.get("best")
        if best:
            params = ", ".join(f"{key}={format_value(value)}" for key, value in best["params"].items())
            run = Path(best["run_dir"] or "")
            link = f"[{run.name}]({run.relative_to(results_dir.resolve()).as_posix()})" if run.is_relative_to(
                results_dir.resolve()) else str(run)
            value = f"{best['value']:.{digits}f}"
        else:
            params, link, value = "—", "—", "—"
        lines.append(f"| {study['study']} | {study['n_complete']} / {study['n_trials']} "
                     f"| {study['metric']}, {study.get('direction', 'maximize')} "
                     f"| {value} | {params} | {link} |")
    return "\n".join(lines)


def format_value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
