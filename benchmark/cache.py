"""`python -m benchmark.cache [unused_days=N] [dry_run=true]`: what the cache holds, and removing the entries
no run has used lately.

Everything in the cache's folders (KINDS) is made again by the next run or command that needs it (decoded
pixels, frozen features, a Grad-CAM pool, a backbone's measured speed, the decode-once scan records), and
no finished run keeps a file there, so removing an entry costs time, never a finished run's result. The
cache only grows otherwise: every split seed, data version and image size writes entries of its own.
Nothing outside those folders is touched, so a `cache_dir` that is not a cache loses nothing.

Each read dates what it reads (`files.mark_used`; an entry before reading it, a record once read).
An entry is a file with its sidecars
(checksum, row hashes, engine record, lock), which share the name up to its 12-hex-digit key, last used at
the newest of their modification times; or a folder of scan records (`scan/<decode options>/`), dated by
the folder, which each scan dates, and each record by its own read. A file a killed writer left
(`.<entry>.<8 hex>.tmp...`) is an entry of its own, dated by its last write, removed holding its entry's
lock. An entry is kept whatever its age where another process holds its lock (it is being written) or has
dated it since it was listed; a run that finds a source it planned to copy rows from gone plans again.
"""

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
from benchmark.files import KEY_LENGTH, WRITER_TAG
from benchmark.runs.settings import number

DAY_S = 86400.0
# The folders medbench writes under cache_dir (a test checks a sweep writes no other); RECORDS holds
# folders of records, one per set of decode options (data/scan.py).
KINDS = ("efficiency", "features", "gradcam", "images", "scan")
RECORDS = "scan"
# A cache file's name: its entry's key, then what `features.rows_path`/`engine_path`, `checksum_path`,
# `atomic_path` (of any of them), `lock_path` and `aside_path` add to it. Files of other names are not
# the cache's and are left alone, as are folders other than scan's record folders (KEY_LENGTH hex digits).
CACHE_FILE = re.compile(
    rf"^\.?(?P<key>.*[0-9a-f]{{{KEY_LENGTH}}})(\.(rows|engine|npy|npz|json))?"
    rf"(?P<unfinished>\.[0-9a-f]{{{WRITER_TAG}}}\.tmp)?\.(npy|npz|json|sha256)(\.(sha256|lock|damaged))?$"
)
RECORD_FOLDER = re.compile(rf"^[0-9a-f]{{{KEY_LENGTH}}}$")
REMOVED, GONE, IN_USE = "removed", "gone", "in use"


@dataclass(frozen=True)
class Entry:
    kind: str  # one of KINDS
    name: str
    paths: tuple[Path, ...]  # what removing it removes
    locks: tuple[Path, ...]  # held while it is removed: its own, or (unfinished) its key's
    last_used: float  # seconds since the epoch
    size: int  # bytes on disk

    def unused_days(self, now: float) -> float:
        return (now - self.last_used) / DAY_S


def entry_of(path: Path) -> tuple[str, bool] | None:
    """(the entry a file of a kind's folder belongs to, whether it is a writer's unfinished file); None for
    a file that is not the cache's."""
    found = CACHE_FILE.match(path.name)
    return (found.group("key"), found.group("unfinished") is not None) if found else None


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


def records_entry(folder: Path) -> Entry | None:
    """A folder of scan records, used as one, dated by the folder each scan dates (a link to one: dated by
    its target, which the scan dates, and removed as the link alone). None where it went meanwhile."""
    inside = [] if folder.is_symlink() else list(folder.rglob("*"))
    try:
        dated = folder.stat() if folder.exists() else folder.lstat()
    except FileNotFoundError:
        return None
    size = sum(map(on_disk, stats([folder, *inside])))
    return Entry(RECORDS, folder.name, (folder,), (), dated.st_mtime, size)


def kind_entries(kind: Path) -> list[Entry]:
    """The entries of one kind's folder (a folder in it, other than scan's, is not the cache's)."""
    found: list[Entry] = []
    groups: dict[str, list[Path]] = {}
    unfinished: dict[str, list[Path]] = {}
    for path in sorted(kind.iterdir()):
        if path.is_dir():
            if kind.name == RECORDS and RECORD_FOLDER.match(path.name) and (entry := records_entry(path)):
                found.append(entry)
        elif owned := entry_of(path):
            key, is_unfinished = owned
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
    """Every entry under `cache_dir`'s KINDS, by kind and name."""
    try:
        return [e for kind in KINDS if (cache_dir / kind).is_dir() for e in kind_entries(cache_dir / kind)]
    except PermissionError as error:
        raise BenchmarkError(f"cannot read {error.filename}: the cache is another user's; list it as that "
                             "user, or give your own cache_dir") from None


def delete(path: Path) -> None:
    """A file, a folder of records, or a link (never what it points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove(entry: Entry, cutoff: float) -> str:
    """Remove an entry's files, holding each of its locks (a lock file of its own removed last, while
    held, as `layout.unlock_run` does; one this call made for an unfinished file's entry removed too).
    REMOVED; GONE where another prune removed it first; IN_USE where another process holds a lock or has
    dated the entry since `cutoff` (a run that has just planned to copy its rows); else the error that
    kept a file."""
    existed = {p for p in entry.locks if p.exists()}
    held: dict[Path, FileLock] = {}
    try:
        for path in entry.locks:
            lock = FileLock(path)
            lock.acquire(timeout=0)
            held[path] = lock
        # the array or record first, its sidecars after: a reader then finds no entry rather than half of one
        data = sorted((p for p in entry.paths if not p.name.endswith(".lock")),
                      key=lambda p: p.name != f"{entry.name}{p.suffix}")
        there = stats(data)
        if data and not there:
            result = GONE
        elif there and max(s.st_mtime for s in there) > cutoff:
            return IN_USE
        else:
            result = REMOVED
        for path in [*data, *(p for p in entry.paths if p not in data)]:
            delete(path)
        return result
    except Timeout:
        return IN_USE
    except OSError as error:
        return why(error)
    finally:
        for path, lock in held.items():
            if path not in existed:  # made by acquiring it here (another prune removed it): not left behind
                path.unlink(missing_ok=True)
            lock.release()


def prune_records(folder: Path, cutoff: float, dry_run: bool, failed: list[str]) -> tuple[int, int]:
    """(records, bytes) of a scan folder in use that no run has read since `cutoff`: those of images no
    longer in any dataset read lately (removed unless `dry_run`, with the bucket folders they leave empty;
    one a run reads meanwhile is decoded again). What cannot be removed is added to `failed`."""
    count = size = 0
    for path in folder.rglob("*"):
        try:
            stat = path.lstat()
            if path.is_file() and stat.st_mtime <= cutoff:
                if not dry_run:
                    path.unlink()
                count, size = count + 1, size + on_disk(stat)
        except FileNotFoundError:
            continue
        except OSError as error:
            failed.append(f"{RECORDS}/{path.relative_to(folder.parent)}: {why(error)}")
    if not dry_run:
        with suppress(OSError):
            for bucket in folder.iterdir():
                with suppress(OSError):  # one holding a record kept, or a file: stays
                    bucket.rmdir()  # one left empty (a writer between its mkdir and write re-decodes later)
    return count, size


def records_in(folders: list[Path], cutoff: float, dry_run: bool, failed: list[str]) -> tuple[int, int]:
    """(records, bytes) that `prune_records` finds in all of `folders`."""
    found = [prune_records(folder, cutoff, dry_run, failed) for folder in folders]
    return sum(n for n, _ in found), sum(size for _, size in found)


def why(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error} ({error.filename})"


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def counted(n: int, noun: str = "entry") -> str:
    plural = "entries" if noun == "entry" else f"{noun}s"
    return f"{n:,} {noun if n == 1 else plural}"


def days_range(ages: list[float]) -> str:
    low, high = f"{min(ages):.1f}", f"{max(ages):.1f}"
    return low if low == high else f"{low} to {high}"


def table(found: list[Entry], now: float) -> list[str]:
    """One line per kind: entries, size on disk, and how many days ago its entries were last used."""
    lines = [f"{'kind':<12}{'entries':>8}{'on disk':>14}   last used (days ago, oldest to newest entry)"]
    for kind in KINDS:
        if mine := [e for e in found if e.kind == kind]:
            lines.append(f"{kind:<12}{len(mine):>8}{megabytes(sum(e.size for e in mine)):>14}   "
                         f"{days_range([e.unused_days(now) for e in mine])}")
    return lines


def by_kind(chosen: list[Entry], records: tuple[int, int]) -> list[str]:
    """Per kind: how many entries, how many megabytes; and the scan records of data no run read."""
    lines = []
    for kind in KINDS:
        if mine := [e for e in chosen if e.kind == kind]:
            lines.append(f"  {kind:<12}{counted(len(mine)):>16}{megabytes(sum(e.size for e in mine)):>14}")
    if records[0]:
        lines.append(f"  {RECORDS:<12}{counted(records[0], 'record'):>16}{megabytes(records[1]):>14}"
                     "   of images no run read for as long")
    return lines


def check_options(cfg: DictConfig) -> Path | None:
    """The cache folder; None where the default one does not exist yet (no run made it)."""
    days = cfg.unused_days
    if days is not None and not (number(days) and days > 0):
        raise BenchmarkError(f"unused_days={days} must be a number of days above 0: e.g. unused_days=30 "
                             "removes what no run used for 30 days")
    if not isinstance(cfg.dry_run, bool):
        raise BenchmarkError(f"dry_run={cfg.dry_run} must be true or false")
    if not isinstance(cfg.cache_dir, str) or not cfg.cache_dir:
        raise BenchmarkError(f"cache_dir={cfg.cache_dir} must name a folder: the cache_dir your runs used "
                             "(conf/config.yaml's default: cache)")
    cache_dir = Path(cfg.cache_dir).expanduser()
    if not cache_dir.exists() and cfg.cache_dir == OmegaConf.load(cli.CONF / "cache.yaml").cache_dir:
        return None
    if not cache_dir.is_dir():
        raise BenchmarkError(f"cache_dir={cfg.cache_dir} is not a folder: give the cache_dir your runs used "
                             "(conf/config.yaml's default: cache)")
    if not any((cache_dir / kind).is_dir() for kind in KINDS) and any(cache_dir.iterdir()):
        raise BenchmarkError(f"cache_dir={cfg.cache_dir} is not a medbench cache: it has none of the "
                             f"folders {', '.join(KINDS)}; give the cache_dir your runs used")
    return cache_dir


def prune(found: list[Entry], cfg: DictConfig, now: float) -> list[Entry]:
    """Remove (or, `dry_run`, list) the entries unused for `unused_days`, and the scan records no run read
    for as long in folders still in use; the entries removed (or that would be). Exit status 1 where a
    file could not be removed."""
    cutoff = now - cfg.unused_days * DAY_S
    stale = sorted((e for e in found if e.last_used <= cutoff), key=lambda e: e.last_used)
    unused = f"unused for {cfg.unused_days:g} days or more"
    # scan folders kept: their records no run read are pruned (a linked folder's are not the cache's)
    record_folders = [e.paths[0] for e in found
                      if e.kind == RECORDS and e not in stale and not e.paths[0].is_symlink()]
    failed: list[str] = []
    records = records_in(record_folders, cutoff, cfg.dry_run, failed)  # none of a stale entry's folders
    if cfg.dry_run:
        for entry in stale:
            print(f"would remove {entry.kind}/{entry.name} ({megabytes(entry.size)}, "
                  f"unused for {entry.unused_days(now):.1f} days)")
        print(f"would remove {counted(len(stale))} ({megabytes(sum(e.size for e in stale))}) {unused}; "
              "nothing removed (dry_run=true)", *by_kind(stale, records), sep="\n")
        return stale
    outcome = {e: remove(e, cutoff) for e in stale}
    removed = [e for e, result in outcome.items() if result == REMOVED]
    print(f"removed {counted(len(removed))} ({megabytes(sum(e.size for e in removed))}) {unused}",
          *by_kind(removed, records), sep="\n")
    if busy := [e for e, result in outcome.items() if result == IN_USE]:
        print(f"kept {counted(len(busy))} that another process is writing or has just used")
    failed += [f"{e.kind}/{e.name}: {result}" for e, result in outcome.items()
               if result not in (REMOVED, GONE, IN_USE)]
    for failure in failed:
        print(f"could not remove {failure}")
    if failed:
        raise SystemExit(1)
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
    if others := sorted(p.name for p in cache_dir.iterdir() if p.name not in KINDS):
        print(f"not the cache's, left alone: {', '.join(others)}")
    if cfg.unused_days is not None:
        return prune(found, cfg, now)
    if found:
        print("remove what no run used for 30 days: make cache DAYS=30, or python -m benchmark.cache "
              "unused_days=30 (dry_run=true lists it first)")
    return []


if __name__ == "__main__":
    cli.main("cache", work)
