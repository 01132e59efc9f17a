"""`python -m benchmark.cache [unused_days=N] [dry_run=true]`: what the cache holds, and removing the entries
no run has used lately.

Everything under `cache_dir` is made again by the next run or command (explain, export, evaluate) that
needs it (decoded pixels, frozen features, a Grad-CAM pool, a backbone's measured speed, the decode-once
scan records), and no finished run keeps a file there, so removing an entry costs time, never a finished
run's result. The cache only grows
otherwise: every split seed, data version and image size writes entries of its own.

Each read dates its entry (`files.mark_used`) before it reads. An entry is a file with its sidecars
(checksum, row hashes, engine record, lock), which share the name up to its 12-hex-digit key, and last
used at the newest of their modification times; or a folder of records (`scan/<decode options>/`), dated
by the folder's own time, which each scan sets. A file a killed writer left (`.<entry>.<8 hex>.tmp...`)
is an entry of its own, dated by its last write. An entry is kept whatever its age where another process
holds its lock (it is being written) or has dated it since it was listed.
"""

import math
import os
import re
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.errors import BenchmarkError
from benchmark.files import KEY_LENGTH, UNFINISHED

DAY_S = 86400.0
ENTRY_KEY = re.compile(rf"^\.?(?P<key>.*?[0-9a-f]{{{KEY_LENGTH}}})\.")  # a name up to its key


@dataclass(frozen=True)
class Entry:
    kind: str  # the cache's subfolder: features, images, gradcam, efficiency, scan
    name: str
    paths: tuple[Path, ...]  # what removing it removes
    locks: tuple[Path, ...]  # held while it is removed: its own, or (unfinished) its key's
    last_used: float  # seconds since the epoch
    size: int  # bytes on disk

    def unused_days(self, now: float) -> float:
        return (now - self.last_used) / DAY_S


def entry_of(path: Path) -> tuple[str, bool]:
    """(the entry a file of a kind's folder belongs to: its key, or its own name where it has none,
    whether it is a writer's unfinished file)."""
    found = ENTRY_KEY.match(path.name)
    return (found.group("key") if found else path.name.lstrip(".")), bool(UNFINISHED.search(path.name))


def on_disk(stat: os.stat_result) -> int:
    """Bytes a file or folder takes on disk, as `du` counts them (a scan record of 2 KB takes a block)."""
    return getattr(stat, "st_blocks", 0) * 512 or stat.st_size


def stats(paths: list[Path]) -> list[os.stat_result]:
    """Those of `paths` still there: a concurrent run renames its temporary files away meanwhile."""
    found = []
    for path in paths:
        with suppress(FileNotFoundError):
            found.append(path.lstat())
    return found


def folder_entry(kind: str, folder: Path) -> Entry:
    """A folder of records, used as one (the scan records of one set of decode options)."""
    inside = [] if folder.is_symlink() else list(folder.rglob("*"))
    size = sum(map(on_disk, stats([folder, *inside])))
    return Entry(kind, folder.name, (folder,), (), folder.lstat().st_mtime, size)


def kind_entries(kind: Path) -> list[Entry]:
    """The entries of one kind's folder."""
    found: list[Entry] = []
    groups: dict[str, list[Path]] = {}
    unfinished: dict[str, list[Path]] = {}
    for path in sorted(kind.iterdir()):
        if path.is_dir():
            found.append(folder_entry(kind.name, path))
            continue
        key, is_unfinished = entry_of(path)
        (unfinished if is_unfinished else groups).setdefault(key, []).append(path)

    def locks_of(key: str) -> tuple[Path, ...]:
        return tuple(p for p in groups.get(key, []) if p.name.endswith(".lock"))

    named = [(key, paths, key) for key, paths in groups.items()]
    named += [(f"{key} (unfinished)", paths, key) for key, paths in unfinished.items()]
    for name, paths, key in named:
        if there := stats(paths):
            found.append(Entry(kind.name, name, tuple(paths), locks_of(key), max(s.st_mtime for s in there),
                               sum(map(on_disk, there))))
    return found


def entries(cache_dir: Path) -> list[Entry]:
    """Every entry under `cache_dir`, by kind and name (files directly in it are not the cache's)."""
    try:
        return [e for kind in sorted(cache_dir.iterdir()) if kind.is_dir() for e in kind_entries(kind)]
    except PermissionError as error:
        raise BenchmarkError(f"cannot read {error.filename}: the cache is another user's; list it as that "
                             "user, or give your own cache_dir") from None


def delete(path: Path) -> None:
    """A file, a folder of records, or a link (never what it points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove(entry: Entry, cutoff: float) -> str | None:
    """Remove an entry's files, holding each of its locks (a lock file of its own removed last, while held,
    as `layout.unlock_run` does). None where removed; else why it stays: another process holds a lock or
    has dated the entry since `cutoff` (a run that has just planned to copy its rows), or a file cannot be
    removed (its error)."""
    held: list[FileLock] = []
    try:
        for lock in (FileLock(p) for p in entry.locks):
            lock.acquire(timeout=0)
            held.append(lock)
        there = stats(list(entry.paths))
        if not there or max(s.st_mtime for s in there) > cutoff:
            return "in use"
        for path in sorted(entry.paths, key=lambda p: p.name.endswith(".lock")):
            delete(path)
    except Timeout:
        return "in use"
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error} ({error.filename})"
    finally:
        for lock in held:
            lock.release()
    return None


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def counted(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


def days_range(ages: list[float]) -> str:
    low, high = f"{min(ages):.1f}", f"{max(ages):.1f}"
    return low if low == high else f"{low} to {high}"


def table(found: list[Entry], now: float) -> list[str]:
    """One line per kind: entries, size on disk, and how many days ago its entries were last used."""
    lines = [f"{'kind':<12}{'entries':>8}{'on disk':>14}   last used (days ago)"]
    for kind in sorted({e.kind for e in found}):
        mine = [e for e in found if e.kind == kind]
        lines.append(f"{kind:<12}{len(mine):>8}{megabytes(sum(e.size for e in mine)):>14}   "
                     f"{days_range([e.unused_days(now) for e in mine])}")
    return lines


def check_options(cfg: DictConfig) -> Path | None:
    """The cache folder; None where the default one does not exist yet (no run made it)."""
    days = cfg.unused_days
    if days is not None and (isinstance(days, bool) or not isinstance(days, int | float)
                             or not math.isfinite(days) or days <= 0):
        raise BenchmarkError(f"unused_days={days} must be a number of days above 0: e.g. unused_days=30 "
                             "removes what no run used for 30 days")
    if not isinstance(cfg.dry_run, bool):
        raise BenchmarkError(f"dry_run={cfg.dry_run} must be true or false")
    cache_dir = Path(cfg.cache_dir).expanduser()
    if cache_dir.is_dir():
        return cache_dir
    if cfg.cache_dir == OmegaConf.load(cli.CONF / "cache.yaml").cache_dir and not cache_dir.exists():
        return None
    raise BenchmarkError(f"cache_dir={cfg.cache_dir} is not a folder: give the cache_dir your runs used "
                         "(conf/config.yaml's default: cache)")


def prune(found: list[Entry], cfg: DictConfig, now: float) -> list[Entry]:
    """Remove (or, `dry_run`, list) the entries unused for `unused_days`; those removed (or that would be)."""
    stale = [e for e in found if e.unused_days(now) >= cfg.unused_days]
    unused = f"unused for {cfg.unused_days} days or more"
    if cfg.dry_run:
        for entry in stale:
            print(f"would remove {entry.kind}/{entry.name} ({megabytes(entry.size)}, "
                  f"unused for {entry.unused_days(now):.1f} days)")
        print(f"{counted(len(stale))} ({megabytes(sum(e.size for e in stale))}) {unused}: "
              "nothing removed (dry_run=true)")
        return stale
    kept = {e: remove(e, cutoff=now - cfg.unused_days * DAY_S) for e in stale}
    removed = [e for e, why in kept.items() if why is None]
    busy = [e for e, why in kept.items() if why == "in use"]
    failed = [(e, why) for e, why in kept.items() if why not in (None, "in use")]
    print(f"removed {counted(len(removed))} ({megabytes(sum(e.size for e in removed))}) {unused}"
          + (f"; kept {counted(len(busy))} another process is writing or has just used" if busy else ""))
    for entry, why in failed:
        print(f"could not remove {entry.kind}/{entry.name}: {why}")
    return removed


def work(cfg: DictConfig) -> list[Entry]:
    """Print the cache's contents; with `unused_days`, prune it. Returns the entries removed (or, with
    `dry_run`, that would be)."""
    cache_dir, now = check_options(cfg), time.time()
    if cache_dir is None:
        print(f"{cfg.cache_dir}: nothing cached yet (a run makes it)")
        return []
    found = entries(cache_dir)
    print(f"{cache_dir}: {counted(len(found))}, {megabytes(sum(e.size for e in found))}")
    if found:
        print("\n".join(table(found, now)))
    if cfg.unused_days is None:
        print("remove what no run used for 30 days: python -m benchmark.cache unused_days=30 "
              "(dry_run=true lists it first)")
        return []
    return prune(found, cfg, now)


if __name__ == "__main__":
    cli.main("cache", work)
