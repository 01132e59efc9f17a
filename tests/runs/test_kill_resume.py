"""A sweep killed with SIGKILL in the middle of a cell, then started again: nothing done is redone,
every cell ends complete, and the killed cell's staging folder does not outlive it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmark.report.load import collect
from tests.conftest import ROOT, run_cli, tiny_overrides

CELLS = ["--multirun", "+sweep=all_backbones", "backbone=mobilenetv2", "seed=0,1", "report.after_sweep=false"]


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the sweep did not get there in time"
        time.sleep(0.05)


def test_sigkill_mid_cell_then_resume(tmp_path: Path):
    results = tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *CELLS, *tiny_overrides(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        def second_cell_writing() -> bool:
            done = list(results.glob("seed0-*/metrics.json"))
            return bool(done) and any(results.glob(".seed1-*.partial-*/history.csv"))

        wait_for(second_cell_writing, timeout=240)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    (first,) = results.glob("seed0-*/metrics.json")
    finished_at = first.stat().st_mtime_ns
    assert list(results.glob(".seed1-*.partial-*")) and not list(results.glob("seed1-*"))

    again = run_cli([*CELLS, *tiny_overrides(tmp_path)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert first.stat().st_mtime_ns == finished_at, "the cell completed before the kill was redone"
    assert len(list(results.glob("seed*/metrics.json"))) == 2
    assert not list(results.glob(".*")), "the killed cell's staging folder was left behind"
    found = collect(tmp_path / "results")  # what the report would list
    assert len(found.runs) == 2 and not found.skipped and not found.failed


def test_sigterm_stops_the_whole_sweep_in_one_line(tmp_path: Path):
    """`kill <pid>` (or a scheduler's stop) of the sweep's process: Python's default would exit at once and
    leave the figure worker drawing on as an orphan; as an interrupt, the process stops it and says so."""
    results = tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2"
    # further seeds left when the first is published: its figures are drawn meanwhile, and eight seeds of
    # 0.3 s each were once all done by then (the sweep exited 0 before the signal)
    cells = [*CELLS[:-2], f"seed={','.join(map(str, range(32)))}", CELLS[-1]]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *cells, *tiny_overrides(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        wait_for(lambda: bool(list(results.glob("seed0-*/metrics.json"))), timeout=240)
        sweep.send_signal(signal.SIGTERM)  # the sweep's process alone, as `kill` sends it
        _, stderr = sweep.communicate(timeout=60)
        assert sweep.returncode == 130 and "interrupted: finished runs are kept" in stderr
        assert "Traceback" not in stderr

        def left() -> list[str]:
            found = subprocess.run(["pgrep", "-g", str(sweep.pid)], capture_output=True, text=True)
            return found.stdout.split()

        deadline = time.monotonic() + 20  # multiprocessing's resource tracker exits once its pipe closes
        while left() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left(), [Path(f"/proc/{pid}/cmdline").read_text() for pid in left()]
    finally:
        subprocess.run(["pkill", "-9", "-g", str(sweep.pid)], capture_output=True)
