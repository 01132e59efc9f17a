"""Checks that catch silent test-set leakage before anyone trusts a number."""

import logging
from collections import defaultdict

from benchmark.data.dataset import Dataset

log = logging.getLogger(__name__)


def cross_split_duplicates(dataset: Dataset) -> dict[str, int]:
    """How many byte-identical images appear in more than one split (e.g. 'train~test': 3).

    Copies of one scan in train and test inflate every metric; the papers' public datasets have them.
    """
    splits_of = defaultdict(set)
    for split_name, split in dataset.splits.items():
        for image_id in split.ids:
            splits_of[dataset.file_hashes.get(image_id, image_id)].add(split_name)
    counts: dict[str, int] = defaultdict(int)
    for found_in in splits_of.values():
        if len(found_in) > 1:
            counts["~".join(sorted(found_in))] += 1
    return dict(counts)


def audit(dataset: Dataset) -> dict:
    """The audit record for the manifest; warns loudly on leakage."""
    duplicates = cross_split_duplicates(dataset)
    if duplicates:
        log.warning(
            "LEAKAGE: identical images in more than one split %s: test metrics are optimistic; "
            "de-duplicate the dataset",
            duplicates,
        )
    return {"cross_split_duplicates": duplicates, "class_counts": dataset.class_counts()}
