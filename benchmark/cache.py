"""`python -m benchmark.cache [unused_days=N] [dry_run=true]`: what the cache holds, and removing the entries
no run has used lately.

Everything under `cache_dir` is made again when missing (decoded pixels, frozen features, a Grad-CAM pool,
a backbone's measured speed, the decode-once scan records), so removing an entry costs time, never a
result. Each read records its use (`files.mark_used`); an entry's last use is the newest modification
time among its files. The cache only grows otherwise: every split seed, data version and image size
writes entries of its own.

An entry is a file with its sidecars (checksum, row hashes, engine record, lock), which share the name up
to its 12-hex-digit key, or a folder of records (`scan/<decode options>/`). A file a killed writer left
(`.<entry>.<8 hex>.tmp...`) is an entry of its own, dated by its last write. An entry whose lock another
process holds (it is being written) is kept whatever its age.
"""

import os
import re
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig

from benchmark import cli
from benchmark.errors import BenchmarkError
from benchmark.files import KEY_LENGTH, UNFINISHED

DAY_S = 86400.0
ENTRY_KEY = re.compile(rf"^\.?(?P<key>.+?[0-9a-f]{{{KEY_LENGTH}}})\.")  # a name up to its key


@dataclass(frozen=True)
class Entry:
    kind: str  # the cache's subfolder: features, images, gradcam, efficiency, scan
    name: str
    paths: tuple[Path, ...]
    last_used: float  # seconds since the epoch
    size: int  # bytes on disk

    def unused_days(self, now: float) -> float:
        return (now - self.last_used) / DAY_S


def entry_of(path: Path) -> str:
    """The entry a file of a kind's folder belongs to: its key, or its own name where it has none."""
    found = ENTRY_KEY.match(path.name)
    key = found.group("key") if found else path.name.lstrip(".")
    return f"{key} (unfinished)" if UNFINISHED.search(path.name) else key


def on_disk(stat: os.stat_result) -> int:
    """Bytes a file takes on disk (what `du` counts: a scan record of 2 KB takes a 4-KB block)."""
    return getattr(stat, "st_blocks", 0) * 512 or stat.st_size


def stats(paths: list[Path]) -> list[os.stat_result]:
    """Those of `paths` still there: a concurrent run renames its temporary files away meanwhile."""
    found = []
    for path in paths:
        with suppress(FileNotFoundError):
            found.append(path.stat())
    return found


def folder_entry(kind: str, folder: Path) -> Entry:
    """A folder of records, used as one (the scan records of one set of decode options, whose folder the
    scan dates at each use)."""
    found = stats([f for f in folder.rglob("*") if f.is_file()])
    return Entry(kind, folder.name, (folder,), folder.stat().st_mtime, sum(map(on_disk, found)))


def entries(cache_dir: Path) -> list[Entry]:
    """Every entry under `cache_dir`, by kind and name."""
    found = []
    for kind in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        groups: dict[str, list[Path]] = {}
        for path in sorted(kind.iterdir()):
            if path.is_dir():
                found.append(folder_entry(kind.name, path))
            else:
                groups.setdefault(entry_of(path), []).append(path)
        for name, paths in groups.items():
            if there := stats(paths):
                found.append(Entry(kind.name, name, tuple(paths), max(s.st_mtime for s in there),
                                   sum(map(on_disk, there))))
    return found


def remove(entry: Entry, cutoff: float) -> bool:
    """Remove an entry's files, holding each of its locks (a lock file last, while held, as
    `layout.unlock_run` does); False, and nothing removed, where another process holds one or has used
    the entry since `cutoff` (a run that has just planned to copy its rows)."""
    held: list[FileLock] = []
    for lock in (FileLock(p) for p in entry.paths if p.name.endswith(".lock")):
        try:
            lock.acquire(timeout=0)
        except Timeout:
            for taken in held:
                taken.release()
            return False
        held.append(lock)
    try:
        there = stats(list(entry.paths))
        if not there or max(s.st_mtime for s in there) > cutoff:
            return False
        for path in sorted(entry.paths, key=lambda p: p.name.endswith(".lock")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    finally:
        for lock in held:
            lock.release()
    return True


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


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


def check_options(cfg: DictConfig) -> Path:
    cache_dir = Path(cfg.cache_dir).expanduser()
    if not cache_dir.is_dir():
        raise BenchmarkError(f"cache_dir={cfg.cache_dir} is not a folder: give the cache_dir your runs used "
                             "(conf/config.yaml's default: cache)")
    days = cfg.unused_days
    if days is not None and (isinstance(days, bool) or not isinstance(days, int | float) or days <= 0):
        raise BenchmarkError(f"unused_days={days} must be a number of days above 0: e.g. unused_days=30 "
                             "removes what no run used for 30 days")
    return cache_dir


def work(cfg: DictConfig) -> list[Entry]:
    """Print the cache's contents; with `unused_days`, remove (or, `dry_run`, list) the entries unused for
    that long. Returns the entries removed (or that would be)."""
    cache_dir, now = check_options(cfg), time.time()
    found = entries(cache_dir)
    print(f"{cache_dir}: {len(found)} entries, {megabytes(sum(e.size for e in found))}")
    if found:
        print("\n".join(table(found, now)))
    if cfg.unused_days is None:
        print("remove what no run used for 30 days: python -m benchmark.cache unused_days=30 "
              "(dry_run=true lists it first)")
        return []
    stale = [e for e in found if e.unused_days(now) >= cfg.unused_days]
    if cfg.dry_run:
        for entry in stale:
            print(f"would remove {entry.kind}/{entry.name} ({megabytes(entry.size)}, "
                  f"unused for {entry.unused_days(now):.1f} days)")
        print(f"{len(stale)} entries ({megabytes(sum(e.size for e in stale))}) unused for "
              f"{cfg.unused_days} days or more: nothing removed (dry_run=true)")
        return stale
    removed = [e for e in stale if remove(e, cutoff=now - cfg.unused_days * DAY_S)]
    busy = len(stale) - len(removed)
    print(f"removed {len(removed)} entries ({megabytes(sum(e.size for e in removed))}) unused for "
          f"{cfg.unused_days} days or more"
          + (f"; kept {busy} that another process is writing or has just used" if busy else ""))
    return removed


if __name__ == "__main__":
    cli.main("cache", work)
