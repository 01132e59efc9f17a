"""Datasets: the built-in synthetic CT slices, user image folders and MedMNIST .npz files."""

import hashlib
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark.data import synthetic
from benchmark.data.dataset import SPLITS, Dataset, Split
from benchmark.data.folder import load_folder
from benchmark.data.images import decode_array, decode_file
from benchmark.data.medmnist import class_names_for, load_npz
from benchmark.errors import BenchmarkError
from benchmark.files import file_sha256

__all__ = ["SPLITS", "Dataset", "Split", "dataset_name", "load_dataset"]
log = logging.getLogger(__name__)
LOADERS = ("synthetic", "folder", "medmnist")


def dataset_name(cfg: DictConfig) -> str:
    """The name runs are filed under: `dataset.name`, else the folder or file name, else the loader."""
    if cfg.get("name"):
        return str(cfg.name)
    if cfg.loader == "synthetic":
        return "synthetic"
    path = Path(str(cfg.path)).expanduser().resolve()
    name = path.stem if path.suffix == ".npz" else path.name
    if not name:
        raise BenchmarkError(f"dataset.path={cfg.path} gives runs no name to be filed under: "
                             "set dataset.name=<name>")
    return name


def fingerprint(hashes: dict[str, str], class_names: list[str], splits: dict[str, Split]) -> str:
    """Content + labels + split assignment: two runs share caches only if all three agree."""
    sha = hashlib.sha256()
    for split_name in SPLITS:
        split = splits[split_name]
        for image_id, label in zip(split.ids, split.labels, strict=True):
            sha.update(f"{split_name}|{image_id}|{hashes[image_id]}|{class_names[label]}\n".encode())
    return sha.hexdigest()[:16]


def from_folder(root: Path, cfg: DictConfig, name: str, is_synthetic: bool) -> Dataset:
    class_names, splits = load_folder(root, cfg)
    hashes = {i: file_sha256(root / i) for split in splits.values() for i in split.ids}
    return Dataset(
        name=name,
        class_names=tuple(class_names),
        splits=splits,
        fingerprint=fingerprint(hashes, class_names, splits),
        synthetic=is_synthetic,
        decode=lambda image_id, size: decode_file(root / image_id, size),
        file_hashes=hashes,
    )


def from_npz(path: Path, cfg: DictConfig, name: str) -> Dataset:
    images, splits = load_npz(path)
    class_names = class_names_for(cfg.get("class_names"), splits)
    hashes = {
        f"{split}/{i}": hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        for split, array in images.items()
        for i, image in enumerate(array)
    }

    def decode(image_id: str, size: int) -> np.ndarray:
        split, index = image_id.split("/")
        return decode_array(images[split][int(index)], size)

    return Dataset(
        name=name,
        class_names=tuple(class_names),
        splits=splits,
        fingerprint=fingerprint(hashes, class_names, splits),
        synthetic=False,
        decode=decode,
        file_hashes=hashes,
    )


def load_dataset(cfg: DictConfig, data_dir: Path) -> Dataset:
    """Build the Dataset the `dataset` config group describes (generating the synthetic one once)."""
    name = dataset_name(cfg)
    if cfg.loader == "synthetic":
        try:
            root = synthetic.generate(data_dir, cfg.n_per_class, cfg.size, cfg.seed, cfg.difficulty)
        except ValueError as error:
            raise BenchmarkError(f"synthetic dataset: {error} (see conf/dataset/synthetic.yaml)") from None
        dataset = from_folder(root, cfg, name, is_synthetic=True)
    elif cfg.loader == "folder":
        dataset = from_folder(Path(str(cfg.path)).expanduser(), cfg, name, is_synthetic=False)
    elif cfg.loader == "medmnist":
        dataset = from_npz(Path(str(cfg.path)).expanduser(), cfg, name)
    else:
        raise BenchmarkError(f"dataset.loader={cfg.loader!r} is unknown: use one of {', '.join(LOADERS)}")
    log.info(
        "dataset %s: classes %s, %s",
        name,
        list(dataset.class_names),
        ", ".join(f"{s} {len(dataset.splits[s])}" for s in SPLITS),
    )
    return dataset
