"""How often the batch-1 latency is timed: a slow network stops at the time budget, a fast one at its cap."""

import time

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
