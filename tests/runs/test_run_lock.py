"""Two identical commands at once: the run's lock makes the second wait for the first, which trains and
publishes it, then find it complete; a lock whose holder was killed stops nobody."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from benchmark.files import lock_path
from benchmark.runs import layout
from benchmark.runs.identity import resolve
from tests.conftest import ROOT, compose_config, tiny_overrides

ONE_EPOCH = "train.max_epochs=1"


def started(args: list[str], log: Path) -> subprocess.Popen:
    """`python -m benchmark args`, its whole output written to `log` as it comes."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def wait_until_all_say(text: str, logs: list[Path], commands: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(text in log.read_text() for log in logs):
        ended = [log.read_text()[-3000:] for log, c in zip(logs, commands, strict=True)
                 if c.poll() is not None]
        assert not ended, f"a command ended before it waited for the run's lock: {ended}"
        assert time.monotonic() < deadline, "the commands did not reach the run's lock in time"
        time.sleep(0.1)


def test_two_identical_commands_at_once_train_the_run_once(tmp_path: Path):
    """The test holds the run's lock until both commands wait for it, so they surely overlap; then one
    trains and publishes the run while the other waits, and the other finds it published and skips it."""
    run_dir = resolve(compose_config(tmp_path, ONE_EPOCH)).run_dir
    held, _ = layout.lock_run(run_dir)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    commands = [started(tiny_overrides(tmp_path, ONE_EPOCH), log) for log in logs]
    try:
        wait_until_all_say("held by another run of the same configuration: waiting", logs, commands, 240)
    finally:
        layout.unlock_run(held, run_dir)
    try:
        for command in commands:
            command.wait(300)
    finally:
        for command in commands:  # a test that failed above leaves no command running
            command.kill()
            command.wait()
    outputs = [log.read_text() for log in logs]
    assert [command.returncode for command in commands] == [0, 0], [o[-3000:] for o in outputs]
    trained = [o for o in outputs if "epoch   1" in o and "macro-AUROC" in o and f"-> {run_dir}\n" in o]
    skipped = [o for o in outputs if f"{run_dir} was published by another run meanwhile" in o]
    assert len(trained) == 1 and len(skipped) == 1 and trained != skipped, outputs
    assert "epoch   1" not in skipped[0] and f"skip: {run_dir} is complete" in skipped[0]
    assert "waited" in skipped[0] and f"for the other run that held {run_dir}" in skipped[0]
    assert layout.is_complete(run_dir)
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name], "a lock file or staging folder left"


def test_a_lock_left_by_a_killed_process_stops_nobody(tmp_path: Path):
    """The OS releases a killed holder's lock: the run is taken at once. Another run beside it was never
    held up by it."""
    folder = tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2"
    run_dir, beside = folder / "seed0-0a1b2c3d", folder / "seed1-0a1b2c3d"
    take = ("import sys, time; from pathlib import Path; from benchmark.runs import layout; "
            "held = layout.lock_run(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", take, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Timeout):
            FileLock(lock_path(run_dir)).acquire(timeout=0)
        other = FileLock(lock_path(beside))
        other.acquire(timeout=0)  # another run's lock: free
        other.release()
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(run_dir).is_file()  # killed: its lock file is still there
    lock, waited = layout.lock_run(run_dir)
    assert waited == 0.0 and lock.is_locked
    layout.unlock_run(lock, run_dir)
    assert not lock_path(run_dir).exists()


def test_a_run_waits_for_its_own_process_s_earlier_run_released_by_another_thread(tmp_path: Path):
    """A sweep's repeated configuration: the earlier run's lock is released on the figure worker's result
    thread (pipeline.then_unlock), and this process's second lock_run takes it then, though filelock
    refuses an unbounded wait on a lock the same process holds. A second release of the first lock (an
    error path) must not remove the lock file the second run now holds."""
    run_dir = tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2" / "seed0-0a1b2c3d"
    first, _ = layout.lock_run(run_dir)
    releaser = threading.Timer(0.5, layout.unlock_run, (first, run_dir))
    releaser.start()
    second, waited = layout.lock_run(run_dir)
    releaser.join()
    assert waited >= 0.4 and second.is_locked and not first.is_locked
    layout.unlock_run(first, run_dir)  # released already: nothing
    assert lock_path(run_dir).is_file()
    with pytest.raises(Timeout):
        FileLock(lock_path(run_dir)).acquire(timeout=0)  # still held by the second run
    layout.unlock_run(second, run_dir)
    assert not lock_path(run_dir).exists()
