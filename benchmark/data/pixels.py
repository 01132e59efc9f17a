"""Decoded pixels, cached once per (images in split order, decoding, image size) as a memory-mapped .npy.

Keyed on the images themselves, not the dataset's fingerprint: a relabelled image or a changed patient
group leaves the pixels of every split whose images stay the same, in the same order, valid."""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.data.dataset import Dataset
from benchmark.files import cached_array, digest


def split_pixels(dataset: Dataset, split: str, size: int, cache_dir: Path) -> np.ndarray:
    """(n, size, size, 3) uint8 images of a split, decoded and resized once per image size."""
    ids = dataset.splits[split].ids
    key = digest(dataset.decoding, dataset.image_hashes(split), size)
    path = cache_dir / "images" / f"{dataset.name}-{split}-{size}px-{key}.npy"

    def fill(out: np.ndarray) -> None:
        shown = tqdm(ids, desc=f"decode {split}", unit="img", leave=False, disable=not ids)  # none when empty
        for row, image_id in enumerate(shown):
            out[row] = dataset.decode(image_id, size)

    return cached_array(path, (len(ids), size, size, 3), "uint8", fill)[0]


class DecodedRows:
    """A split's images decoded when asked for, by row: for the few images a partly reused feature entry
    passes through the network, or a Grad-CAM pool, which would not pay for decoding and caching the
    whole split. Indexed by an array of rows, like `split_pixels`' array."""

    def __init__(self, dataset: Dataset, split: str, size: int) -> None:
        self.decode, self.ids, self.size = dataset.decode, dataset.splits[split].ids, size

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.decode(self.ids[row], self.size) for row in rows]).astype(np.uint8)
