"""The in-memory description of a dataset: class list, splits (with groups) and how to decode one image."""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmark.data.scan import ScanRecord

SPLITS = ("train", "val", "test")
# What a run's metrics.json says about its data (runs/pipeline.split_summary); an ensemble of runs on the
# same data inherits them (report/ensemble.py)
DATA_FACTS = ("split_sizes", "split_by", "split_from", "split_groups", "n_groups", "groups_in_several_splits",
              "skipped_images", "cross_split_duplicates", "dropped_duplicates", "cross_split_hints",
              "duplicates_with_other_labels")


@dataclass(frozen=True)
class Split:
    """Image ids (paths relative to the dataset root, or `split/index` for arrays), class indices and,
    when the data has them, the group (patient, study or site) of each image."""

    ids: tuple[str, ...]
    labels: np.ndarray
    groups: tuple[str, ...] | None = None  # None: no groups given, every image is its own unit

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: np.ndarray) -> "Split":
        groups = None if self.groups is None else tuple(self.groups[i] for i in indices)
        return Split(tuple(self.ids[i] for i in indices), self.labels[indices], groups)


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
    group_name: str | None = None  # "patient", "study", ...: None when the split ignored groups
    records: dict = field(default_factory=dict)  # what loading found: skipped files, audit, decoding
    # each listed image's decode-once scan (skipped files too), kept for what compares images later
    # (benchmark.evaluate's copies of a run's images) instead of scanning them again
    scans: dict[str, ScanRecord] = field(default_factory=dict)
    # how an image's file becomes pixels (decoder version, dataset.window/intensity/resize): with each
    # image's content hash, all that its pixels, and a frozen backbone's features of it, depend on
    decoding: str = ""

    def image_hashes(self, split: str) -> tuple[str, ...]:
        """The content hash of each image of `split`, in its order: the key of what is cached per image
        (pixels, features), which a new label, group or split of the same images leaves valid."""
        return tuple(self.file_hashes[image_id] for image_id in self.splits[split].ids)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per split, images per class (for the manifest and the leaderboard header)."""
        return {
            split_name: {
                name: int(np.sum(split.labels == index)) for index, name in enumerate(self.class_names)
            }
            for split_name, split in self.splits.items()
        }

    def group_counts(self) -> dict[str, dict[str, int]] | None:
        """Per split, distinct groups per class; None without groups."""
        if self.group_name is None:
            return None
        return {
            split_name: {
                name: len({g for g, label in zip(split.groups, split.labels, strict=True) if label == index})
                for index, name in enumerate(self.class_names)
            }
            for split_name, split in self.splits.items()
        }
