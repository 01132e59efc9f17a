"""How often the batch-1 latency is timed: a slow network stops at the time budget, a fast one at its cap."""

import time
from pathlib import Path

import numpy as np

from benchmark.metrics.efficiency import MIN_TIMED_CALLS, timed_calls

BATCH = np.zeros((1, 8, 8, 3), np.float32)


def counting(seconds: float) -> tuple[list[int], object]:
    """A forward pass that takes `seconds` and counts its calls."""
    calls = [0]

    def forward(batch: np.ndarray) -> np.ndarray:
        calls[0] += 1
        time.sleep(seconds)
        return batch

    return calls, forward


def test_a_slow_call_is_timed_until_the_budget_but_never_fewer_than_the_minimum():
    calls, slow = counting(0.04)
    times = timed_calls(slow, BATCH, warmup=1, repeats=20, budget_s=0.1)
    assert len(times) == MIN_TIMED_CALLS  # 0.1 s is spent after 3 calls: the minimum still holds
    assert calls[0] == 1 + MIN_TIMED_CALLS and min(times) >= 0.04


def test_a_call_is_timed_until_the_budget_is_spent():
    _, slow = counting(0.01)
    times = timed_calls(slow, BATCH, warmup=0, repeats=50, budget_s=0.1)
    assert MIN_TIMED_CALLS < len(times) < 50 and sum(times) >= 0.1 > sum(times[:-1])


def test_a_fast_call_is_timed_as_often_as_asked_and_without_a_budget_always():
    _, fast = counting(0.0)
    assert len(timed_calls(fast, BATCH, warmup=0, repeats=20, budget_s=1.0)) == 20
    _, slow = counting(0.01)
    assert len(timed_calls(slow, BATCH, warmup=0, repeats=12)) == 12


def class_folders(root: Path, n_classes: int, per_class: int) -> Path:
    """A folder dataset of `n_classes` classes, `per_class` random PNGs each."""
    from PIL import Image

    rng = np.random.default_rng(n_classes * 100 + per_class)
    for klass in range(n_classes):
        (root / f"c{klass}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{klass}" / f"c{klass}_{i}.png")
    return root


def test_the_cost_cache_tells_heads_of_other_class_counts_and_knn_train_sizes_apart(tiny_cfg, tmp_path: Path):
    """The seeds of a backbone share one measurement, but a head with another number of classes (or a kNN
    vote holding another number of train images) is another network: its cost is measured, not read back."""
    from benchmark.runs.pipeline import run

    def folder(name: str, n_classes: int, per_class: int, *extra: str) -> dict:
        data = class_folders(tmp_path / name, n_classes, per_class)
        return run(tiny_cfg("dataset=folder", f"dataset.path={data}", *extra, synthetic=False))

    three = folder("three", 3, 12)
    four = folder("four", 4, 12)
    assert four["efficiency_from_cache"] is False
    assert four["params_trainable"] - three["params_trainable"] == 256 + 1  # one more output unit
    assert folder("four_again", 4, 12, "seed=1")["efficiency_from_cache"] is True  # a further seed: read

    small = folder("small", 3, 12, "train=knn")
    large = folder("large", 3, 16, "train=knn")
    more = large["split_sizes"]["train"] - small["split_sizes"]["train"]
    assert large["efficiency_from_cache"] is False and more > 0
    width = 1280  # MobileNetV2's pooled features: the vote holds each train image's features and label
    assert large["params_total"] - small["params_total"] == more * (width + 3)
