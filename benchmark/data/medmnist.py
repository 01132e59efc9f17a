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
        # numpy reads other files as pickles and advises allow_pickle, which would run the file's code
        why = ("it holds object arrays, which numpy reads only by unpickling: export numeric arrays"
               if "Object arrays" in str(error) else "not an archive of arrays" if "pickle" in str(error)
               else f"{type(error).__name__}: {error}")
        raise BenchmarkError(
            f"cannot read {path} as .npz ({why}): the file is truncated or not an .npz; download or export "
            "it again"
        ) from None
    splits = {}
    for name, raw in labels.items():
        if raw.ndim == 2 and raw.shape[1] > 1:
            raise BenchmarkError(f"{path} is multi-label ({raw.shape[1]} labels per image): not supported")
        check_split(path, name, images[name], raw)
        flat = raw.reshape(-1).astype(np.int64)
        splits[name] = Split(ids=tuple(f"{name}/{i}" for i in range(len(flat))), labels=flat)
    return images, splits


def check_split(path: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    """One image per label, 2-D images (grey, or 1 or 3 channels), and some of them: a file whose counts
    differ would pair labels with the wrong images, or drop some, without a word."""
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))):
        raise BenchmarkError(
            f"{path}: {name}_images has shape {images.shape}, not (images, height, width[, 1 or 3]): 3-D "
            "volumes (MedMNIST3D) and other layouts are not supported; export 2-D slices"
        )
    if len(images) != len(labels):
        raise BenchmarkError(
            f"{path}: {name}_images holds {len(images)} images but {name}_labels {len(labels)} labels: the "
            "file is damaged or its arrays do not belong together; download or export it again"
        )
    if not len(images):
        raise BenchmarkError(f"{path}: the {name} split is empty: MedMNIST's layout has train, val and test "
                             "images; export a file with all three")


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
