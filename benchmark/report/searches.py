"""The "Hyperparameter searches" table: each Optuna study's best configuration, as chosen on validation,
for the studies on the data the leaderboard ranks (versions.py)."""

import json
from pathlib import Path

from benchmark.report.load import Run
from benchmark.report.versions import fingerprints_of
from benchmark.runs.search import data_in_name


def search_summaries(results_dir: Path) -> list[dict]:
    """Every study summary the searches wrote (<results_dir>/search/<study>.json); unreadable ones skipped."""
    found = []
    for path in sorted((results_dir / "search").glob("*.json")):
        try:
            study = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(study, dict) and "study" in study:
            found.append(study)
    return found


def run_key(run_dir: str | Path) -> tuple[str, ...]:
    """A run directory by its dataset, backbone and name: a study records it as the search saw it
    (relative to where it ran, or absolute), the report as relative to its results_dir."""
    return Path(run_dir).parts[-3:]


def data_of(study: dict) -> str | None:
    """The fingerprint (or its prefix) of the data the study searched on: recorded in its summary, else
    the end of its name (search.with_data); None for a study named before the data's version was."""
    return study.get("data_fingerprint") or data_in_name(str(study.get("study")))[1]


def is_current(study: dict, current: dict[tuple[str, ...], str | None], names: set[str]) -> bool:
    """Whether the study searched the data the page ranks: its best run is one of the page's runs
    (versions.py) and still on the study's data (not retrained in place on new data); a study without a
    best run, when its data is current. A study named before its data's version was counts while no
    successor (its name followed by a data version, search.with_data) exists."""
    version, named = data_of(study), str(study.get("study"))
    if version is None and any(name != named and data_in_name(name)[0] == named for name in names):
        return False
    best = study.get("best") or {}
    if not best.get("run_dir"):
        return version is not None and any((found or "").startswith(version) for found in current.values())
    key = run_key(best["run_dir"])
    return key in current and (version is None or (current[key] or "").startswith(version))


def searches_section(summaries: list[dict], runs: list[Run], digits: int) -> str:
    """One line per current study: trials finished of all, the best validation value and its parameters,
    and a link to its run (which the leaderboard lists among the backbone's configurations). The others
    are named in one line: their trials are not on this page."""
    current = {run_key(rel): found for rel, found in fingerprints_of(runs).items()}
    rels = {run_key(run.rel): run.rel for run in runs}
    names = {str(study.get("study")) for study in summaries}
    rows, others = [], []
    for study in summaries:
        if not is_current(study, current, names):
            others.append(f"`{study.get('study')}`")
            continue
        best = study.get("best")
        if best:
            params = ", ".join(f"{key}={format_value(value)}" for key, value in best["params"].items())
            rel = rels[run_key(best["run_dir"])]
            link, value = f"[{Path(rel).name}]({rel})", f"{best['value']:.{digits}f}"
        else:
            params, link, value = "—", "—", "—"
        rows.append(f"| {study['study']} | {study['n_complete']} / {study['n_trials']} "
                    f"| {study['metric']}, {study.get('direction', 'maximize')} "
                    f"| {value} | {params} | {link} |")
    table = "\n".join([
        "Each study optimised a validation metric of its backbone (never a test metric); its trials are "
        "ordinary runs, listed under *All configurations* of their dataset.",
        "",
        "| study | trials finished / run | metric (validation), direction | best | parameters | run |",
        "|---|---|---|---|---|---|",
        *rows,
    ]) if rows else ""
    note = f"Not listed, on another version of the data (not current): {', '.join(others)}." if others else ""
    return "\n\n".join(part for part in (table, note) if part)


def format_value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
