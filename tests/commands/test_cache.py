"""`python -m benchmark.cache`: entries are dated by their last use, only those unused for `unused_days` go,
an entry another process is writing stays, and what went is made again by the next run that needs it."""

import json
import os
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from benchmark.cache import KINDS, entries, remove
from benchmark.files import atomic_path, cached_array, checksum_path, lock_path
from benchmark.train.features import engine_path, rows_path
from tests.conftest import run_cli, tiny_overrides

DAY_S = 86400


def age(root: Path, days: float) -> None:
    """Every file and folder under `root` last modified `days` ago."""
    then = time.time() - days * DAY_S
    for path in [*root.rglob("*"), root]:
        os.utime(path, (then, then), follow_symlinks=False)


def filled(path: Path) -> np.ndarray:
    return cached_array(path, (4, 3), "float32", lambda out: out.__setitem__(..., 1.0))[0]


def cache_command(*args: str):
    return run_cli(list(args), module="benchmark.cache")


def test_reading_a_cached_array_marks_its_entry_used_and_leaves_the_data_undated(tmp_path: Path):
    entry = tmp_path / "features" / f"split-{'a' * 12}.npy"
    filled(entry)
    age(tmp_path, 40)
    data_time = entry.stat().st_mtime_ns
    filled(entry)
    assert time.time() - checksum_path(entry).stat().st_mtime < 60  # its use recorded
    assert entry.stat().st_mtime_ns == data_time  # the data's date, which is_intact checks, unchanged
    (used,) = entries(tmp_path)
    assert used.unused_days(time.time()) < 0.01


def writers_file(path: Path) -> Path:
    """The temporary file `atomic_path` writes for `path` (and removes when it is done)."""
    with suppress(InterruptedError), atomic_path(path) as tmp:
        name = tmp.name
        raise InterruptedError  # the writer killed: nothing renamed into place
    return path.with_name(name)


def test_an_entry_is_its_file_with_its_sidecars_and_a_killed_writers_file_is_its_own(tmp_path: Path):
    # a dataset named like a scanner export: 12 hex digits and a dot before the entry's own key
    key, speed, pool = (f"ct_202401151230.v2-test-x_features-32px-{'b' * 12}-{'c' * 12}", "0123456789ab",
                        f"mobilenetv2-32px-{'d' * 12}-{'e' * 12}")
    features, efficiency, gradcam = (tmp_path / kind for kind in ("features", "efficiency", "gradcam"))
    data = features / f"{key}.npy"
    speeds, pools = efficiency / f"{speed}.json", gradcam / f"{pool}.npz"
    paths = [data, checksum_path(data), rows_path(data), engine_path(data), lock_path(data),
             writers_file(data), writers_file(checksum_path(data)), speeds, lock_path(speeds),
             writers_file(speeds), pools, lock_path(pools),
             features / "notes" / "mine.txt",  # a folder in a kind's folder, not scan's: not the cache's
             tmp_path / "images" / "patient1.png", tmp_path / "scan" / "dicom" / "a.dcm"]  # nor these
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / "scan" / ("f" * 12) / "ab").mkdir(parents=True)
    (tmp_path / "mydata").mkdir()  # not a kind: not the cache's
    found = {(e.kind, e.name): ([p.name for p in e.paths], [p.name for p in e.locks])
             for e in entries(tmp_path)}
    unfinished = f"{key} (unfinished)", f"{speed} (unfinished)"
    assert {name: len(paths) for (_, name), (paths, _) in found.items()} == {
        key: 5, unfinished[0]: 2, speed: 2, unfinished[1]: 1, pool: 2, "f" * 12: 1}
    # an unfinished file is removed holding its entry's lock, which stays
    assert found["features", unfinished[0]][1] == [lock_path(data).name]
    assert found["efficiency", unfinished[1]][1] == [lock_path(speeds).name]


def test_a_sweep_writes_only_the_kinds_the_cache_command_knows(tiny_sweep):
    assert {p.name for p in (tiny_sweep.root / "cache").iterdir()} <= set(KINDS)


def test_an_entry_another_prune_removed_first_is_gone_and_leaves_no_lock_made_for_it(tmp_path: Path):
    """Two prunes at once: the second finds each entry the first listed and removed; taking its lock made
    the lock file again, which must not stay behind (as a fresh, never-pruned entry)."""
    entry = tmp_path / "images" / f"x-{'c' * 12}.npy"
    filled(entry)
    unfinished = writers_file(entry)
    unfinished.write_bytes(b"x")  # a killed writer's file beside it
    age(tmp_path, 40)
    listed = entries(tmp_path)
    for path in (tmp_path / "images").iterdir():  # the other prune, first
        path.unlink()
    cutoff = time.time() - 30 * DAY_S
    assert [remove(e, cutoff) for e in listed] == ["gone", "gone"]
    assert list((tmp_path / "images").iterdir()) == []


def test_scan_records_no_run_read_go_from_a_folder_in_use(tmp_path: Path):
    folder = tmp_path / "scan" / ("a" * 12)
    old, read = (folder / "ab" / f"{name * 64}.json" for name in "12")
    alone = folder / "cd" / f"{'3' * 64}.json"  # the only record of its bucket
    for record in (old, read, alone):
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    age(tmp_path, 40)
    for path in (read, folder):  # a run's scan dates its folder and each record it reads
        os.utime(path)
    listed = cache_command(f"cache_dir={tmp_path}", "unused_days=30", "dry_run=true")
    assert "would remove 0 entries" in listed.stdout and "2 records" in listed.stdout and old.exists()
    pruned = cache_command(f"cache_dir={tmp_path}", "unused_days=30")
    assert pruned.returncode == 0 and "2 records" in pruned.stdout, pruned.stdout + pruned.stderr
    assert not old.exists() and read.exists()
    assert not alone.parent.exists() and read.parent.is_dir()  # an emptied bucket goes, not one in use


def test_only_entries_unused_for_unused_days_go_and_one_being_written_stays(tmp_path: Path):
    old, busy, new = (tmp_path / "images" / f"{name}-{'0' * 11}{key}.npy" for name, key in enumerate("abc"))
    for entry in (old, busy, new):
        filled(entry)
    age(tmp_path, 40)
    filled(new)  # read now
    listed = cache_command(f"cache_dir={tmp_path}", "unused_days=30", "dry_run=true")
    assert listed.returncode == 0, listed.stderr
    assert "2 entries" in listed.stdout and old.exists() and busy.exists()
    with FileLock(lock_path(busy)):  # this process is writing it
        removed = cache_command(f"cache_dir={tmp_path}", "unused_days=30")
    assert removed.returncode == 0, removed.stderr
    assert "removed 1 entry" in removed.stdout
    assert "kept 1 entry that another process is writing" in removed.stdout
    assert not old.exists() and not checksum_path(old).exists() and not lock_path(old).exists()
    assert busy.exists() and new.exists() and checksum_path(new).exists()


def test_an_entry_a_run_uses_after_it_was_listed_stays(tmp_path: Path):
    entry = tmp_path / "features" / f"x-{'f' * 12}.npy"
    filled(entry)
    age(tmp_path, 40)
    (listed,) = entries(tmp_path)
    filled(entry)  # a run reads it between the listing and the removal
    assert remove(listed, cutoff=time.time() - 30 * DAY_S) == "in use" and entry.exists()


@pytest.mark.parametrize("args, problem", [
    (["unused_days=0"], "unused_days=0 must be a number of days above 0"),
    (["unused_days=-3"], "unused_days=-3 must be a number of days above 0"),
    (["unused_days=month"], "unused_days=month must be a number of days above 0"),
    (["unused_days=nan"], "unused_days=nan must be a number of days above 0"),
    (["unused_days=30", "dry_run=0"], "dry_run=0 must be true or false"),
    (["cache_dir=/no/such/cache"], "cache_dir=/no/such/cache is not a folder"),
    (["cache_dir=null"], "cache_dir=None must name a folder"),
    (["cache_dir={tmp}/results"], "cache_dir={tmp}/results is not a medbench cache"),
    (["unused=30"], "unused is not an option of benchmark.cache"),
])
def test_bad_options_are_one_line_and_remove_nothing(tmp_path: Path, args: list[str], problem: str):
    entry = tmp_path / "images" / f"x-{'e' * 12}.npy"
    filled(entry)
    (tmp_path / "results" / "runs" / "synthetic").mkdir(parents=True)  # a results folder, not a cache
    age(tmp_path, 40)
    result = cache_command(f"cache_dir={tmp_path}", *(arg.format(tmp=tmp_path) for arg in args))
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line.startswith("error: ") and problem.format(tmp=tmp_path) in line
    assert entry.exists() and (tmp_path / "results" / "runs" / "synthetic").is_dir()


def test_an_unfinished_file_another_process_is_writing_stays_and_a_linked_folder_goes_alone(tmp_path: Path):
    entry = tmp_path / "features" / f"x-{'a' * 12}.npy"
    filled(entry)
    writing = entry.with_name(f".{entry.stem}.0123abcd.tmp.npy")
    writing.write_bytes(b"x")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-records"
    (elsewhere / "ab").mkdir(parents=True)
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / ("b" * 12)).symlink_to(elsewhere)
    age(tmp_path, 40)
    age(elsewhere, 40)  # a linked folder is dated by its target, which the scan dates
    with FileLock(lock_path(entry)):
        held = cache_command(f"cache_dir={tmp_path}", "unused_days=30")
    assert held.returncode == 0 and writing.exists() and entry.exists(), held.stdout + held.stderr
    assert not (tmp_path / "scan" / ("b" * 12)).exists() and (elsewhere / "ab").is_dir()
    freed = cache_command(f"cache_dir={tmp_path}", "unused_days=30")
    assert "removed 2 entries" in freed.stdout and not writing.exists() and not entry.exists()


def test_a_list_piped_into_a_reader_that_stopped_is_no_error(tmp_path: Path):
    filled(tmp_path / "images" / f"x-{'d' * 12}.npy")
    age(tmp_path, 40)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # as a user's
    piped = subprocess.run(f"{sys.executable} -m benchmark.cache cache_dir={tmp_path} unused_days=30 "
                           "dry_run=true | head -n 0", shell=True, capture_output=True, text=True, env=env)
    assert piped.stderr == ""  # the output still buffered when the command is done: no error at exit


def test_the_default_cache_not_made_yet_is_said_so(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "benchmark.cache"], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0 and "cache: nothing cached yet" in result.stdout, result.stderr


def test_a_sweeps_cache_keeps_what_a_run_used_and_a_run_makes_again_what_went(tiny_sweep, tmp_path: Path):
    sweep = tiny_sweep.copy_to(tmp_path / "sweep")
    cache = sweep.root / "cache"
    age(cache, 40)
    mobilenet = run_cli(["backbone=mobilenetv2", "seed=2", *tiny_overrides(sweep.root)])
    assert mobilenet.returncode == 0, mobilenet.stderr[-2000:]
    pruned = cache_command(f"cache_dir={cache}", "unused_days=30")
    assert pruned.returncode == 0, pruned.stderr
    assert len(list((cache / "features").glob("*-mobilenetv2_*.npy"))) == 3  # read by the run: kept
    assert len(list((cache / "scan").iterdir())) == 1  # the dataset's scan records, read by the run: kept
    assert not list((cache / "features").glob("*-resnet50_*"))  # unused since the sweep: gone
    assert len(list((cache / "efficiency").glob("*.json"))) == 1  # the run's speed, read from the cache
    resnet = run_cli(["backbone=resnet50", "seed=2", *tiny_overrides(sweep.root)])
    assert resnet.returncode == 0, resnet.stderr[-2000:]
    (run_dir,) = (sweep.root / "results" / "runs" / "synthetic" / "resnet50").glob("seed2-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["features_from_cache"] is False  # extracted again
    assert len(list((cache / "features").glob("*-resnet50_*.npy"))) == 3
