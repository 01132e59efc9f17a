"""Stratified, seeded splits: the same dataset and split_seed always give the same test set."""

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from benchmark.errors import BenchmarkError


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise BenchmarkError(
            f"dataset.split={list(fractions)} must be three positive train/val/test fractions summing to 1, "
            "e.g. dataset.split=[0.7,0.1,0.2]"
        )
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def split_off(labels: np.ndarray, fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, split-off) with `fraction` of each class split off."""
    indices = np.arange(len(labels))
    count = max(1, round(len(labels) * fraction))  # a count: float fractions like 0.1/0.8 round up in sklearn
    try:
        kept, taken = train_test_split(indices, test_size=count, stratify=labels, random_state=seed)
    except ValueError as error:
        counts = np.bincount(labels)
        raise BenchmarkError(
            f"cannot split off a stratified {what} set ({error}); class counts are {counts.tolist()}: "
            "add images to the small classes or provide the split as folders"
        ) from None
    return np.sort(kept), np.sort(taken)


def stratified_three_way(labels: np.ndarray, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """train/val/test index arrays in the given proportions, each class represented in each split."""
    train_fraction, val_fraction, test_fraction = check_fractions(fractions)
    rest, test = split_off(labels, test_fraction, seed, "test")
    train, val = split_off(labels[rest], val_fraction / (train_fraction + val_fraction), seed, "val")
    return {"train": rest[train], "val": rest[val], "test": test}
