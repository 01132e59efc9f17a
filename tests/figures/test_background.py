"""A sweep's figure worker: a real spawned process draws the figures, and a run is published only once
its figures are written; a figure it fails to draw fails that cell and publishes nothing."""

import json
import threading
from functools import partial

import pytest

from benchmark.figures import background
from benchmark.figures import run as run_figures
from benchmark.runs import layout
from benchmark.runs.identity import resolve
from benchmark.runs.pipeline import publish_run
from tests.conftest import compose_config

CURVE = [[0.5, 0.9], [1.0, 0.8]]


def test_the_worker_draws_and_the_run_is_finished_once_after_its_last_figure(tmp_path):
    seen, finished = [], threading.Event()

    def finish(figures):
        seen.append((sorted(p.name for p in tmp_path.glob("*.png")), [f.exception() for f in figures]))
        finished.set()

    background.start()
    try:
        assert background.drawing()
        names = ["a.png", "b.png", "c.png"]
        figures = [background.draw(run_figures.coverage_figure, CURVE, "t", tmp_path / n) for n in names]
        background.then(figures, finish)
        assert finished.wait(180)
    finally:
        background.stop()
    assert not background.drawing()
    assert seen == [(names, [None, None, None])]  # once, with every figure already on disk


def test_without_a_worker_figures_are_drawn_at_once_and_errors_raise_there(tmp_path):
    drawn = background.draw(run_figures.coverage_figure, CURVE, "t", tmp_path / "now.png")
    assert drawn.done() and (tmp_path / "now.png").is_file()
    with pytest.raises(TypeError):  # a figure that cannot be drawn raises in the run that draws it
        background.draw(run_figures.coverage_figure, "not a curve", "t", tmp_path / "bad.png")


def test_a_figure_the_worker_cannot_draw_fails_its_cell_and_publishes_nothing(tmp_path, caplog):
    """Its FAILED line names the cell as the sweep's progress line did while it ran (a later cell is
    running by then), swept settings included."""
    cfg = compose_config(tmp_path)
    identity = resolve(cfg)
    stage = layout.staging_directory(identity.run_dir)
    background.start()
    try:
        figures = [background.draw(run_figures.coverage_figure, "not a curve", "t", stage / "coverage.png")]
        cell = "mobilenetv2 seed=0 train=finetune"
        background.then(figures, partial(publish_run, cfg, identity, stage, {}, cell=cell))
    finally:
        background.stop()
    assert not stage.exists() and not layout.is_complete(identity.run_dir)
    assert json.loads((identity.run_dir / "failed.json").read_text())["error_type"] == "TypeError"
    assert [r.getMessage().split(":")[0] for r in caplog.records if "FAILED" in r.getMessage()] == [
        f"cell {cell} FAILED"]


def test_settle_waits_for_every_run_to_be_published_and_keeps_the_worker(tmp_path):
    published = []

    def finish(figures):
        threading.Event().wait(0.5)  # publishing takes a while: settle must wait for all of it
        published.append([f.exception() for f in figures])

    background.start()
    try:
        for name in ("a", "b"):
            drawn = background.draw(run_figures.coverage_figure, CURVE, "t", tmp_path / f"{name}.png")
            background.then([drawn], finish)
        background.settle()
        assert published == [[None], [None]] and background.drawing()
        later = background.draw(run_figures.coverage_figure, CURVE, "t", tmp_path / "later.png")
        assert later.result(180) is None and (tmp_path / "later.png").is_file()
    finally:
        background.stop()


def test_the_worker_ends_when_its_sweep_is_killed_outright(tmp_path):
    """QA: a sweep killed by SIGKILL (or a TensorFlow abort) left its figure worker and multiprocessing's
    resource tracker running for good, 185 MB."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import os\nfrom benchmark.figures import background\nbackground.start()\n"
              "background._worker[0].submit(os.getpid).result(120)\n"  # the worker is up
              "print(*[p.pid for p in background._worker[0]._processes.values()], flush=True)\n"
              "import time\ntime.sleep(600)\n")
    sweep = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(sweep.stdout.readline())
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and is_running(worker):
            time.sleep(0.2)
        assert not is_running(worker)
    finally:
        sweep.kill()
        sweep.stdout.close()
        if worker is not None and is_running(worker):  # a failing run leaves nothing behind either
            os.kill(worker, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """A process that exists and is not a zombie (its stat's state field is not Z)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
