"""The group (patient, study or site) of each image, from one of three dataset keys, and the split table.

Exactly one of these may be set:
    dataset.groups=<csv>           columns `file,group`; files relative to dataset.path
    dataset.group_pattern=<regex>  one capture group, re.search over the relative path
    dataset.group_depth=<k>        the folder(s) under the class folder: <class>/<patient>/*.png for k=1
Nothing set: no groups, every image is its own unit (and splits are exactly the per-image ones).
"""

import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from benchmark.data.dataset import SPLITS, Split
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)
GROUP_KEYS = ("groups", "group_pattern", "group_depth")
EXAMPLES = 3  # example files named in an error message


def plural(noun: str) -> str:
    """The plural of a group's name (dataset.group_name) as the reports print it: patients, studies,
    series, boxes."""
    if noun.endswith("s"):
        return noun  # series, and a name given in the plural already
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("x", "z", "ch", "sh")) else "s")


def _examples(files: Sequence[str]) -> str:
    shown = ", ".join(files[:EXAMPLES])
    more = len(files) - EXAMPLES
    return shown + (f" (+{more} more)" if more > 0 else "")


def group_key(cfg) -> str | None:
    """The one group key the config sets, or None; more than one is an error naming them."""
    chosen = [key for key in GROUP_KEYS if cfg.get(key) not in (None, "")]
    if len(chosen) > 1:
        raise BenchmarkError(
            f"dataset sets {', '.join(f'dataset.{k}' for k in chosen)}: groups come from exactly one of "
            f"them; keep one and set the others to null"
        )
    return chosen[0] if chosen else None


def normalise(path: str) -> str:
    """A relative path as the folder listing spells it (forward slashes, no leading `./`)."""
    return str(PurePosixPath(path.strip().replace("\\", "/")))


def read_group_csv(path: Path, root: Path) -> dict[str, str]:
    """file -> group from a CSV with columns `file,group`, each file relative to `root` (`relative_to`)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "file" not in columns or "group" not in columns:
                raise BenchmarkError(
                    f"dataset.groups={path} has columns {columns}: it needs the columns `file,group` "
                    "(file relative to dataset.path, group = patient/study/site id)"
                )
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except OSError as error:
        raise BenchmarkError(
            f"dataset.groups={path} cannot be read ({error.strerror or error}): point it at the CSV"
        ) from None
    found: dict[str, str] = {}
    conflicts: list[str] = []
    bases = {PurePosixPath(normalise(str(base))) for base in (root.absolute(), root.resolve())}
    for row in rows:
        if not row.get("file"):
            continue
        file = relative_to(normalise(row["file"]), bases)
        if file in found and found[file] != row.get("group", ""):
            conflicts.append(file)
        found[file] = row.get("group", "")
    if conflicts:
        raise BenchmarkError(
            f"dataset.groups={path} gives {len(conflicts)} file(s) two different groups, e.g. "
            f"{_examples(conflicts)}: list each file once"
        )
    return found


def _csv_path(value: str, root: Path) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists() and (root / path).exists():
        return root / path
    return path


def warn_missing_files(table: dict[str, str], ids: Sequence[str], path: Path, root: Path) -> None:
    """One warning for rows naming a file that is not there: a CSV exported for a whole PACS may list more
    files than were copied, so it is no error, but a wrong path prefix shows up here first. Rows for files
    that are there but not listed (skipped as unreadable, not images) are not counted."""
    listed = set(ids)
    absent = [file for file in table if file not in listed and not (root / file).exists()]
    if absent:
        log.warning(
            "dataset.groups=%s: %d of the %d file(s) it lists are not under dataset.path=%s, e.g. %s: "
            "their rows are ignored (paths are relative to dataset.path)",
            path, len(absent), len(table), root, _examples(absent),
        )


def relative_to(file: str, bases: set[PurePosixPath]) -> str:
    """A file named by its absolute path under dataset.path (as given, or with links resolved) made
    relative to it, as the listing spells it (QA: a CSV of full paths was refused as "no group for 31 of
    31 images"); any other path as it is."""
    path = PurePosixPath(file)
    under = [base for base in bases if path.is_absolute() and path.is_relative_to(base)]
    return str(path.relative_to(under[0])) if under else file


def groups_from_csv(ids: Sequence[str], value: str, root: Path) -> tuple[str, ...]:
    path = _csv_path(value, root)
    if not path.is_file():
        raise BenchmarkError(
            f"dataset.groups={value} is not a file: point it at a CSV with columns file,group"
        )
    table = read_group_csv(path, root)
    warn_missing_files(table, ids, path, root)
    missing = [i for i in ids if not table.get(i)]
    if missing:
        raise BenchmarkError(
            f"dataset.groups={path} has no group for {len(missing)} of {len(ids)} images, e.g. "
            f"{_examples(missing)}: add a `file,group` row for each (file relative to dataset.path={root})"
        )
    return tuple(table[i] for i in ids)


def groups_from_pattern(ids: Sequence[str], pattern: str) -> tuple[str, ...]:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise BenchmarkError(
            f"dataset.group_pattern='{pattern}' is not a valid regular expression ({error}): "
            r"fix it, e.g. 'patient(\d+)_'"
        ) from None
    if compiled.groups != 1:
        raise BenchmarkError(
            f"dataset.group_pattern='{pattern}' has {compiled.groups} capture groups: it needs exactly one, "
            r"the group id, e.g. 'patient(\d+)_' (use (?:...) for the others)"
        )
    found, unmatched = [], []
    for image_id in ids:
        match = compiled.search(image_id)
        if match is None or not match.group(1):
            unmatched.append(image_id)
        else:
            found.append(match.group(1))
    if unmatched:
        raise BenchmarkError(
            f"dataset.group_pattern='{pattern}' does not match {len(unmatched)} of {len(ids)} images, e.g. "
            f"{_examples(unmatched)}: change the pattern (searched in the path relative to dataset.path) "
            "or use dataset.groups=<csv>"
        )
    return tuple(found)


def groups_from_depth(ids: Sequence[str], depth, class_level: int) -> tuple[str, ...]:
    """The `depth` folders under the class folder (at path level `class_level`), joined with `/`."""
    if isinstance(depth, bool) or not str(depth).strip().isdigit() or int(depth) < 1:
        raise BenchmarkError(
            f"dataset.group_depth={depth!r} must be a positive integer: 1 = the folder under the class "
            "folder (<class>/<patient>/*.png)"
        )
    depth = int(depth)
    found, shallow = [], []
    for image_id in ids:
        parts = PurePosixPath(image_id).parts
        folders = parts[class_level + 1 : -1]
        if len(folders) < depth:
            shallow.append(image_id)
        else:
            found.append("/".join(folders[:depth]))
    if shallow:
        layout = "<split>/<class>/" if class_level else "<class>/"
        raise BenchmarkError(
            f"dataset.group_depth={depth} needs {depth} folder(s) under the class folder "
            f"({layout}{'/'.join(['<group>'] * depth)}/<image>) but {len(shallow)} of {len(ids)} images lie "
            f"shallower, e.g. {_examples(shallow)}: lower dataset.group_depth, move the images into group "
            "folders, or use dataset.group_pattern / dataset.groups"
        )
    return tuple(found)


def assign_groups(ids: Sequence[str], cfg, root: Path, class_level: int = 0) -> tuple[str, ...] | None:
    """The group of each image id (paths relative to `root`), or None when no group key is set.

    `class_level` is the path level of the class folder: 0 for `<class>/...`, 1 for `<split>/<class>/...`.
    """
    key = group_key(cfg)
    if key is None:
        return None
    value = cfg.get(key)
    if key == "groups":
        found = groups_from_csv(ids, str(value), root)
    elif key == "group_pattern":
        found = groups_from_pattern(ids, str(value))
    else:
        found = groups_from_depth(ids, value, class_level)
    warn_groups_across_classes(ids, found, class_level, cfg.get("group_name") or "group")
    return found


def warn_groups_across_classes(
    ids: Sequence[str], groups: Sequence[str], class_level: int, noun: str
) -> None:
    """Say when a group holds images of several class folders: one patient with several findings is
    right, but an export that numbers patients per class (normal/P001 and covid/P001, different people)
    makes them one patient, silently (QA: 27 patients counted as 25)."""
    classes: dict[str, set[str]] = {}
    for image_id, group in zip(ids, groups, strict=True):
        classes.setdefault(group, set()).add(PurePosixPath(image_id).parts[class_level])
    mixed = sorted(group for group, found in classes.items() if len(found) > 1)
    if mixed:
        example = f"{mixed[0]!r} ({', '.join(sorted(classes[mixed[0]]))})"
        log.warning(
            "%d of %d %s hold images of several classes, e.g. %s: right if one %s has several findings; if "
            "your export numbers them per class (normal/P001 and covid/P001 are different people), give them "
            "distinct ids (dataset.groups=<csv>, or a group_pattern that captures the class folder too)",
            len(mixed), len(classes), plural(noun), example, noun,
        )


def splits_frame(splits: dict[str, Split], class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image: file, split, label (the class name), group ("" without groups); the run's
    splits.csv. Splits in train/val/test order, images in split order."""
    order = [s for s in SPLITS if s in splits] + [s for s in splits if s not in SPLITS]
    rows = []
    for name in order:
        split = splits[name]
        groups = split.groups if split.groups is not None else ("",) * len(split)
        for file, label, group in zip(split.ids, split.labels, groups, strict=True):
            rows.append((file, name, class_names[int(label)], str(group)))
    return pd.DataFrame(rows, columns=["file", "split", "label", "group"])
