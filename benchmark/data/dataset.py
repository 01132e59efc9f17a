"""The in-memory description of a dataset: class list, splits and how to decode one image."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Image ids (paths relative to the dataset root, or `split/index` for arrays) and class indices."""

    ids: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Dataset:
    """Everything downstream needs; the class list is decided here once and passed on."""

    name: str
    class_names: tuple[str, ...]
    splits: dict[str, Split]
    fingerprint: str
    synthetic: bool
    decode: Callable[[str, int], np.ndarray]
    file_hashes: dict[str, str]

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per split, images per class (for the manifest and the leaderboard header)."""
        return {
            split_name: {
                name: int(np.sum(split.labels == index)) for index, name in enumerate(self.class_names)
            }
            for split_name, split in self.splits.items()
        }
