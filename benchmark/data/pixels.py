"""Decoded pixels, cached once per (dataset content, split, image size) as a memory-mapped .npy."""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.data.dataset import Dataset
from benchmark.files import cached_array, digest


def split_pixels(dataset: Dataset, split: str, size: int, cache_dir: Path) -> np.ndarray:
    """(n, size, size, 3) uint8 images of a split, decoded and resized once per image size."""
    ids = dataset.splits[split].ids
    path = (
        cache_dir
        / "images"
        / f"{dataset.name}-{split}-{size}px-{digest(dataset.fingerprint, split, size)}.npy"
    )

    def fill(out: np.ndarray) -> None:
        for row, image_id in enumerate(tqdm(ids, desc=f"decode {split}", unit="img", leave=False)):
            out[row] = dataset.decode(image_id, size)

    return cached_array(path, (len(ids), size, size, 3), "uint8", fill)[0]
