"""A local MedMNIST `.npz` with its official splits (no download: point dataset.path at the file)."""

import zipfile
from pathlib import Path

import numpy as np

from benchmark.data.dataset import Split
from benchmark.errors import BenchmarkError

_KEYS = ("images", "labels")


def check_file(path: Path) -> None:
    if not path.is_file():
        raise BenchmarkError(f"dataset.path={path} is not a file: point it at a MedMNIST .npz")


def load_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Split]]:
    """Images per split and the official splits; multi-label files (e.g. ChestMNIST) are refused."""
    check_file(path)
    try:
        archive = np.load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive of named arrays")
        with archive:
            missing = [
                f"{s}_{k}" for s in ("train", "val", "test") for k in _KEYS if f"{s}_{k}" not in archive
            ]
            if missing:
                raise BenchmarkError(f"{path} lacks the keys {missing}: expected MedMNIST's official layout")
            images = {s: archive[f"{s}_images"] for s in ("train", "val", "test")}
            labels = {s: archive[f"{s}_labels"] for s in ("train", "val", "test")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # truncated or not an npz at all
        raise BenchmarkError(
            f"cannot read {path} as .npz ({type(error).__name__}: {error}): the file is truncated or not "
            "an .npz; download or export it again"
        ) from None
    splits = {}
    for name, raw in labels.items():
        if raw.ndim == 2 and raw.shape[1] > 1:
            raise BenchmarkError(f"{path} is multi-label ({raw.shape[1]} labels per image): not supported")
        flat = raw.reshape(-1).astype(np.int64)
        splits[name] = Split(ids=tuple(f"{name}/{i}" for i in range(len(flat))), labels=flat)
    return images, splits


def class_names_for(configured: list[str] | None, splits: dict[str, Split]) -> list[str]:
    """Configured names, checked against the label values; `class_<k>` when none are configured."""
    if min(split.labels.min() for split in splits.values()) < 0:
        raise BenchmarkError("the .npz has negative labels: MedMNIST labels are class indices 0, 1, ...")
    n_classes = int(max(split.labels.max() for split in splits.values())) + 1
    if configured is None:
        return [f"class_{k}" for k in range(n_classes)]
    if len(configured) != n_classes:
        raise BenchmarkError(
            f"dataset.class_names has {len(configured)} names but the labels are 0..{n_classes - 1} "
            f"({n_classes} classes): give exactly {n_classes} names, in label order"
        )
    return list(configured)
