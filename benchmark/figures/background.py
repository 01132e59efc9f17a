"""A sweep's figures drawn by a worker process while the next cells train, then the leaderboard's while
the sweep's last Grad-CAM maps are made.

Matplotlib is single-threaded Python: a run's three figures cost 0.46 s, about 10 s of the 21 cells of a
default sweep, while TensorFlow's process holds the GIL and one of two cores idles. A worker process,
spawned once per sweep (a fork would copy TensorFlow's threads), draws them instead, and each run is
published as soon as its figures are written (`then`), so a run directory is still complete or absent.
After the last cell it draws the leaderboard's figures (4.4 s) while this process makes the missing
Grad-CAM maps (4.6 s): the sweep's end took 10.3-11.7 s, now 6.8-8.7 s (three of each, alternating).
Without a worker (`start` not called: a single run, `make report`, tests) `draw` draws at once.
"""

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

_worker: list[ProcessPoolExecutor] = []
_finishing: list[Future] = []  # one per run still to be published by `then`


def _ready() -> None:
    import benchmark.figures.run  # noqa: F401  matplotlib, seaborn and pandas, before the first figure


def _exit_with_parent() -> None:
    """The worker's initializer: it ends when the sweep's process does. A sweep killed outright (SIGKILL, a
    TensorFlow abort) never shuts its pool down, and the worker, which holds both ends of its own task
    queue, would wait for figures forever (185 MB, with multiprocessing's resource tracker beside it)."""
    from multiprocessing.connection import wait

    sentinel = multiprocessing.parent_process().sentinel  # readable once the parent has gone
    threading.Thread(target=lambda: (wait([sentinel]), os._exit(1)), daemon=True).start()


def start() -> None:
    """Draw in a worker process from now on (once per process). The worker starts now and imports the
    plotting libraries while this process imports TensorFlow."""
    if not _worker:
        _worker.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_exit_with_parent))
        _worker[0].submit(_ready)
        atexit.register(stop)  # no run is left unpublished if the sweep's own end never comes


def drawing() -> bool:
    """True once a worker draws this process's figures (runs are then finished by `then`'s callback)."""
    return bool(_worker)


def draw(function: Callable[..., Any], *args: Any) -> Future:
    """`function(*args)` in the worker once started (module-level function, picklable arguments);
    else now, raising as the call would."""
    if _worker:
        return _worker[0].submit(function, *args)
    drawn: Future = Future()
    drawn.set_result(function(*args))
    return drawn


def then(figures: list[Future], finish: Callable[[list[Future]], None]) -> None:
    """`finish(figures)` once every figure is drawn: now without a worker, else on the worker's result
    thread the moment the last one is written. `finish` reads the futures' errors itself."""
    if not figures or all(figure.done() for figure in figures):
        finish(figures)
        return
    left, lock, finished = [len(figures)], threading.Lock(), Future()
    _finishing.append(finished)

    def one_drawn(_: Future) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            try:
                finish(figures)
            finally:
                finished.set_result(None)

    for figure in figures:
        figure.add_done_callback(one_drawn)


def settle() -> None:
    """Wait until every run whose figures were sent is published; the worker stays, to draw the report's
    figures while this process makes the Grad-CAM maps."""
    while _finishing:
        _finishing.pop(0).result()


def stop() -> None:
    """Wait until every figure is drawn and its run published, and end the worker (the sweep's end,
    after its report)."""
    while _worker:
        _worker[0].shutdown(wait=True)  # still `drawing()` meanwhile: the callbacks record their errors
        _worker.pop()
    _finishing.clear()
