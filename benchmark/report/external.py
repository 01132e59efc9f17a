"""The "External validation" table: each run scored on other data (`python -m benchmark.evaluate`)
against its own test split, with the drop."""

import json
import math
from pathlib import Path

from benchmark.data.groups import plural
from benchmark.metrics.table import metric
from benchmark.report.rows import Row
from benchmark.runs.layout import EXTERNAL
from benchmark.runs.model_card import with_interval


def external_results(results_dir: Path, row: Row) -> list[tuple[dict, dict]]:
    """(the run's metrics, one external site's metrics) for every external score of the row's runs."""
    found = []
    for run in row.runs:
        for path in sorted((results_dir / run.rel / EXTERNAL).glob("*/metrics.json")):
            try:
                found.append((run.metrics, json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
    return found


def repeated_images(external: dict) -> str:
    """The site's images that are the run's own (copies or re-encodes, `images_in_run_data`), with the run
    splits they repeat when recorded: a repeated training image is the model's own lesson, not a test."""
    repeated = external.get("images_in_run_data")
    if not repeated:
        return ""
    by_split = (external.get("run_data_copies") or {}).get("by_split") or {}
    where = ", ".join(f"{split} {n}" for split, n in by_split.items())
    images = "image" if repeated == 1 else "images"
    return f" ⚠️ {repeated} {images} from the run's own data" + (f" ({where})" if where else "")


def cases(scores: dict) -> str:
    """A site's images and what its intervals resample: whole patients, or each image (QA: an ungrouped
    site's narrower interval sat beside a grouped internal one, unmarked)."""
    groups = scores.get("n_test_groups")
    if groups:
        return f"{scores['n_test']} ({groups} {plural(scores.get('split_by') or 'group')})"
    return f"{scores['n_test']} (resampled by image)"


def external_section(rows: list[Row], results_dir: Path, primary: str, digits: int) -> str | None:
    """One line per (run, site): images, internal and external primary metric with the run's one-seed
    intervals, and external minus internal. None when no run was scored elsewhere."""
    lines = []
    for row in rows:
        for internal, external in external_results(results_dir, row):
            drop = external.get(primary, math.nan) - internal.get(primary, math.nan)
            synthetic = " (synthetic)" if external.get("synthetic_data") else ""
            synthetic += repeated_images(external)
            absent = ", ".join(external.get("absent_classes") or []) or "—"
            lines.append(
                f"| {row.label} | {internal['seed']} | {external['site']}{synthetic} | {cases(external)} "
                f"| {absent} | {with_interval(internal, primary, digits)} "
                f"| {with_interval(external, primary, digits)} "
                f"| {f'{drop:+.{digits}f}' if math.isfinite(drop) else '—'} "
                f"| {with_interval(external, 'accuracy', digits)} |"
            )
    if not lines:
        return None
    name = metric(primary).name
    return "\n".join([
        f"Each run's test {name} (internal) against its {name} on every image of another site's data, "
        "same model, decoding and preprocessing (`python -m benchmark.evaluate`); intervals per run "
        "(one seed, test-set sampling only), resampling whole patients where the data had groups, else "
        "images (the images column says which: a site scored without groups gets narrower intervals than "
        "its slices deserve). Every configuration's runs are listed, chosen or not; a macro "
        "average is undefined (—) at a site without every class.",
        "",
        f"| row | seed | site | images | classes absent | internal {name} | external {name} "
        "| external − internal | external accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
    ])
