"""Atomic writes and the checksummed, locked array cache, with real processes on a real filesystem."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmark.files import atomic_path, cached_array, checksum_path, publish_directory, size_bytes
from tests.conftest import ROOT

FILL_SLOWLY = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from benchmark.files import cached_array

    path, markers = Path(sys.argv[1]), Path(sys.argv[2])

    def fill(out):
        (markers / f"filled-{os.getpid()}").touch()
        time.sleep(1.0)  # long enough that the other process arrives while this one fills
        out[:] = np.arange(out.size, dtype=out.dtype).reshape(out.shape)

    array, _ = cached_array(path, (50, 8), "float32", fill)
    print(float(array.sum()))
""")


def test_two_processes_filling_one_cache_entry_fill_it_once(tmp_path: Path):
    path, markers = tmp_path / "cache" / "features.npy", tmp_path / "markers"
    markers.mkdir()
    command = [sys.executable, "-c", FILL_SLOWLY, str(path), str(markers)]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert len(list(markers.iterdir())) == 1, "the second process must wait and read, not fill again"
    expected = float(np.arange(400, dtype=np.float32).sum())
    assert outputs == [str(expected)] * 2
    assert np.array_equal(np.load(path), np.arange(400, dtype=np.float32).reshape(50, 8))
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == [
        "features.npy", "features.npy.sha256"]


def test_a_corrupt_cache_file_is_rebuilt_not_trusted(tmp_path: Path, caplog):
    path, fills = tmp_path / "pixels.npy", []

    def fill(out: np.ndarray) -> None:
        fills.append(1)
        out[:] = 7

    first, was_cached = cached_array(path, (4, 4), "uint8", fill)
    assert not was_cached and int(first.sum()) == 112
    assert cached_array(path, (4, 4), "uint8", fill)[1] is True and len(fills) == 1
    del first
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in the pixel data: same size, still a valid .npy header
    path.write_bytes(bytes(data))
    again, was_cached = cached_array(path, (4, 4), "uint8", fill)
    assert not was_cached and len(fills) == 2 and int(again.sum()) == 112
    assert "does not match its checksum" in caplog.text
    checksum_path(path).unlink()  # a file without its checksum is not trusted either
    assert cached_array(path, (4, 4), "uint8", fill)[1] is False and len(fills) == 3


def test_publishing_a_folder_replaces_only_when_asked(tmp_path: Path):
    target = tmp_path / "run"
    for content, replace in (("first", True), ("second", False), ("third", True)):
        staging = tmp_path / f".staging-{content}"
        staging.mkdir()
        (staging / "metrics.json").write_text(content)
        publish_directory(staging, target, replace=replace)
        assert not staging.exists()
    assert (target / "metrics.json").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_folder_written_through_atomic_path_appears_whole_or_not_at_all(tmp_path: Path):
    """A Keras model saved unzipped is a folder: it takes its place in one rename, and a writer that fails
    halfway leaves neither the folder nor its temporary sibling behind."""
    target = tmp_path / "extractors" / "model"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("the save failed halfway")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        (tmp / "model.weights.h5").write_bytes(b"x" * 1000)
    assert sorted(f.name for f in target.iterdir()) == ["config.json", "model.weights.h5"]
    assert list(target.parent.iterdir()) == [target] and size_bytes(target) == 1002
    with atomic_path(target) as tmp:  # a second writer (no lock shared between nodes) finishes later
        tmp.mkdir()
        (tmp / "config.json").write_text('{"late": true}')
    assert (target / "config.json").read_text() == "{}" and list(target.parent.iterdir()) == [target]
