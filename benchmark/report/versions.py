"""Which complete runs of a dataset are on its current data, so the report never pools seeds, chooses a
configuration or compares rows across versions of the data.

A run records the fingerprint of the data it was trained on (content, labels, split, decoding). When the
images of a folder change in place or a class folder is renamed, re-running one configuration trains it
on the new data, but the other configurations' complete runs stay on the old data. The current version of
a dataset is the fingerprint of its most recently finished run; runs of any other fingerprint are stale:
set aside and named at the top of the page, never silently ranked. Runs without a fingerprint (made
before it was recorded) count as current, as the run directory's own resume check counts them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from benchmark.data import FINGERPRINT_SETTINGS
from benchmark.runs.layout import ENSEMBLE

if TYPE_CHECKING:
    from benchmark.report.load import Run


@dataclass(frozen=True)
class Version:
    """One version of a dataset's data: its fingerprint, classes and the dataset.* settings of a run on it."""

    fingerprint: str
    classes: tuple[str, ...]
    settings: dict | None  # config.yaml's dataset node; None when unreadable (older or copied runs)


@dataclass(frozen=True)
class Stale:
    """Complete runs of a dataset made on another version of its data than the current one."""

    dataset: str
    version: Version
    current: Version
    runs: tuple[Run, ...]

    @property
    def settings_changed(self) -> list[str]:
        """The dataset.* settings of the data that differ from the current version's run (e.g. another split
        seed): empty when they agree or are unknown, i.e. the data itself changed on disk."""
        return changed_settings(self.version.settings, self.current.settings)

    @property
    def reason(self) -> str:
        """Why these runs are set aside, in one line (runs.csv): the settings that differ, else the data."""
        versions = f"data fingerprint {self.version.fingerprint} (now {self.current.fingerprint})"
        if changed := self.settings_changed:
            return f"other dataset settings: {'; '.join(changed)}; {versions}"
        return f"another version of the data: {versions}"


def fingerprints_of(runs: list[Run]) -> dict[str, str | None]:
    """Each run's data fingerprint by its folder (fingerprint_of: an ensemble's from its members)."""
    by_rel = {run.rel: run for run in runs}
    return {run.rel: fingerprint_of(run, by_rel) for run in runs}


def fingerprint_of(run: Run, by_rel: dict[str, Run]) -> str | None:
    """The run's data fingerprint (metrics.json, else manifest.json); an ensemble without one of its own
    (made before it was recorded) has its members': several joined with `+` never match the current one."""
    found = run.metrics.get("dataset_fingerprint") or (run.manifest.get("dataset") or {}).get("fingerprint")
    if found or run.metrics.get("backbone") != ENSEMBLE:
        return str(found) if found else None
    rels = [rel for rel in run.manifest.get("members") or [] if rel in by_rel]
    members = {found for rel in rels if (found := fingerprint_of(by_rel[rel], by_rel)) is not None}
    return "+".join(sorted(members)) or None


def finished_at(run: Run, results_dir: Path) -> float:
    """When the run finished (manifest.json), else when its metrics.json was written."""
    try:
        return dt.datetime.fromisoformat(str(run.manifest["finished"])).timestamp()
    except (KeyError, ValueError, TypeError, OverflowError):
        pass
    try:
        return (results_dir / run.rel / "metrics.json").stat().st_mtime
    except OSError:
        return 0.0


def dataset_settings(run: Run, results_dir: Path) -> dict | None:
    """The run's dataset.* settings from its config.yaml; None when it is missing or unreadable."""
    try:
        found = OmegaConf.to_container(OmegaConf.load(results_dir / run.rel / "config.yaml"))
    except Exception:  # noqa: BLE001  (a broken provenance file costs the detail, never the report)
        return None
    settings = found.get("dataset") if isinstance(found, dict) else None
    return settings if isinstance(settings, dict) else None


def changed_settings(old: dict | None, new: dict | None) -> list[str]:
    """`dataset.split_seed=1 (now 0)` for each setting that feeds the fingerprint and differs (another
    dataset.path or image_size leaves the data as it is, so cannot be why); empty when either is unknown."""
    if old is None or new is None:
        return []
    return [
        f"dataset.{key}={old.get(key)} (now {new.get(key)})"
        for key in FINGERPRINT_SETTINGS
        if old.get(key) != new.get(key)
    ]


def version_of(run: Run, fingerprint: str, results_dir: Path) -> Version:
    return Version(fingerprint, tuple(run.metrics["classes"]), dataset_settings(run, results_dir))


def current_data(runs: list[Run], results_dir: Path) -> tuple[list[Run], list[Stale]]:
    """The runs on each dataset's current data (and those without a fingerprint), and the others grouped
    by dataset and fingerprint. Ensembles are made from the other runs, so they never set the version."""
    fingerprints = fingerprints_of(runs)
    trained = [run for run in runs
               if fingerprints[run.rel] is not None and run.metrics.get("backbone") != ENSEMBLE]
    newest: dict[str, Run] = {}  # the last finished run of each dataset (the sort's last of it wins)
    for run in sorted(trained, key=lambda run: (finished_at(run, results_dir), run.rel)):
        newest[str(run.metrics["dataset"])] = run
    kept: list[Run] = []
    others: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        dataset, found = str(run.metrics["dataset"]), fingerprints[run.rel]
        if dataset not in newest or found is None or found == fingerprints[newest[dataset].rel]:
            kept.append(run)
        else:
            others[(dataset, found)].append(run)
    stale = []
    currents: dict[str, Version] = {}  # each dataset's current version: its config.yaml read once
    for (dataset, found), members in sorted(others.items()):
        if dataset not in currents:
            reference = newest[dataset]
            currents[dataset] = version_of(reference, str(fingerprints[reference.rel]), results_dir)
        current = currents[dataset]
        # an ensemble's config.yaml names its members, not the dataset.* settings
        trained = next((run for run in members if run.metrics.get("backbone") != ENSEMBLE), members[0])
        stale.append(Stale(dataset, version_of(trained, found, results_dir), current, tuple(members)))
    return kept, stale
