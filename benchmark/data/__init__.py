"""Datasets: the built-in synthetic CT slices, user image folders and MedMNIST .npz files.

Loading a dataset is the whole hygiene pass a careful methods section describes, in this order: list
the image files (junk and hidden files ignored), hash them, decode each once (`scan.py`: unreadable
files are skipped and listed, or all reported at once), assign patient/study groups and split (grouped
and stratified, `folder.py`), then audit exact and near duplicates across splits (`audit.py`) and drop
or refuse them if asked. Everything found is kept in `Dataset.records` for the run's manifest, and each
image's scan in `Dataset.scans`.
"""

import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark.data import synthetic
from benchmark.data.audit import audit, audit_record, check_dedupe
from benchmark.data.dataset import SPLITS, Dataset, Split
from benchmark.data.folder import check_root, is_presplit, load_folder
from benchmark.data.images import NO_HEADER_WINDOW, OTHER_WINDOWS, DecodeOptions, decode_array, decode_file
from benchmark.data.medmnist import check_file, class_names_for, load_npz
from benchmark.data.scan import ScanRecord, scan_arrays, scan_files
from benchmark.errors import BenchmarkError
from benchmark.files import digest, file_sha256

__all__ = ["SPLITS", "Dataset", "Split", "dataset_name", "load_dataset"]
log = logging.getLogger(__name__)
LOADERS = ("synthetic", "folder", "medmnist")
BAD_IMAGE_ACTIONS = ("skip", "error")
DECODER_VERSION = 2  # bump when decoding changes what pixels an image gives, so caches are rebuilt
# The dataset.* settings that decide what `fingerprint` hashes (images, labels, groups, split, decoding;
# near_duplicate_bits with dedupe=drop); the others (name, path, image_size, group_name, ...) never change it.
FINGERPRINT_SETTINGS = ("loader", "n_per_class", "size", "seed", "difficulty", "slices_per_patient",
                        "class_names", "split", "val_fraction", "split_seed", "groups", "group_pattern",
                        "group_depth", "dedupe", "near_duplicate_bits", "window", "intensity", "resize")


def user_path(cfg: DictConfig) -> Path:
    """The folder or .npz a user's dataset config points at."""
    return Path(str(cfg.path)).expanduser()


def files_root(cfg: DictConfig, data_dir: Path) -> Path | None:
    """The folder a dataset's image ids are relative to: the user's folder or the synthetic tree; None
    for arrays (a MedMNIST .npz), whose ids name no file."""
    if cfg.loader == "folder":
        return user_path(cfg)
    if cfg.loader == "synthetic":
        return synthetic.dataset_dir(data_dir, **synthetic_parameters(cfg))
    return None


def dataset_name(cfg: DictConfig) -> str:
    """The name runs are filed under: `dataset.name`, else the folder or file name, else the loader."""
    if cfg.get("name"):
        return str(cfg.name)
    if cfg.loader == "synthetic":
        return "synthetic"
    path = user_path(cfg).resolve()
    name = path.stem if path.suffix == ".npz" else path.name
    if not name:
        raise BenchmarkError(
            f"dataset.path={cfg.path} gives runs no name to be filed under: set dataset.name=<name>"
        )
    return name


def fingerprint(
    hashes: dict[str, str], class_names: list[str], splits: dict[str, Split], extra: object
) -> str:
    """Content + labels + groups + split assignment + decoding: runs share caches only if all agree."""
    sha = hashlib.sha256(repr(extra).encode())
    for split_name in SPLITS:
        split = splits[split_name]
        groups = split.groups or ("",) * len(split)
        for image_id, label, group in zip(split.ids, split.labels, groups, strict=True):
            sha.update(f"{split_name}|{image_id}|{hashes[image_id]}|{class_names[label]}|{group}\n".encode())
    return sha.hexdigest()[:16]


def check_bad_image_action(action: str) -> None:
    if action not in BAD_IMAGE_ACTIONS:
        raise BenchmarkError(
            f"dataset.on_bad_image={action!r} is unknown: use one of {', '.join(BAD_IMAGE_ACTIONS)}"
        )


def readable_only(records: dict[str, ScanRecord], ids: list[str], action: str) -> list[str]:
    """The ids whose files decode; the others are skipped with a warning, or all reported in one error."""
    check_bad_image_action(action)
    bad = {i: records[i].reason for i in ids if records[i].reason}
    if windowless := [i for i, reason in bad.items() if NO_HEADER_WINDOW in reason]:
        raise BenchmarkError(  # the setting, not the files: skipping them as unreadable dropped half the data
            f"dataset.window=header, but {len(windowless)} of {len(ids)} image files have no window of "
            f"their own (WindowCenter/WindowWidth or VOI LUT), e.g. {windowless[0]}: use "
            "dataset.window=auto (the header's window where there is one, else lung for CT) or one window "
            f"for all: {', '.join(OTHER_WINDOWS)}"
        )
    if bad and action == "error":
        listed = "; ".join(f"{i} ({reason})" for i, reason in bad.items())
        raise BenchmarkError(
            f"{len(bad)} unreadable image file(s): {listed} — remove or re-export them, "
            "or set dataset.on_bad_image=skip"
        )
    for image_id, reason in bad.items():
        log.warning("skipping unreadable image %s: %s", image_id, reason)
    return [i for i in ids if i not in bad]


def without(splits: dict[str, Split], dropped: set[str]) -> dict[str, Split]:
    return {
        name: split.subset(np.array([k for k, i in enumerate(split.ids) if i not in dropped], dtype=int))
        for name, split in splits.items()
    }


def audited(cfg: DictConfig, splits: dict[str, Split], records: dict[str, ScanRecord]) -> tuple[dict, dict]:
    """The splits after the duplicate audit (dedupe=drop removes the later split's copy) and its record."""
    result = audit(splits, records, int(cfg.get("near_duplicate_bits", 28)), str(cfg.get("dedupe", "warn")))
    return (without(splits, set(result.dropped)) if result.dropped else splits), {
        "audit": audit_record(result),
        "audit_pairs": result.pairs,
    }


def from_folder(
    root: Path, cfg: DictConfig, name: str, is_synthetic: bool, cache_dir: Path | None
) -> Dataset:
    options = DecodeOptions.from_config(cfg)
    hashes: dict[str, str] = {}
    records: dict[str, ScanRecord] = {}

    def usable(ids: list[str]) -> list[str]:
        hashes.update({i: file_sha256(root / i) for i in ids})
        records.update(scan_files(root, ids, hashes, options, cache_dir))
        return readable_only(records, ids, str(cfg.get("on_bad_image", "skip")))

    class_names, splits = load_folder(root, cfg, usable)
    splits, found = audited(cfg, splits, records)
    found["split_from"] = "folders" if is_presplit(root) else "dataset.split"
    grouped = splits["train"].groups is not None
    found["skipped"] = [{"file": i, "reason": r.reason} for i, r in records.items() if r.reason]
    found["decoding"] = {
        **options.record(),
        "applied": dict(Counter(r.note for r in records.values() if r.note)),
    }
    return Dataset(
        name=name,
        class_names=tuple(class_names),
        splits=splits,
        fingerprint=fingerprint(hashes, class_names, splits, (DECODER_VERSION, options.record())),
        decoding=digest(DECODER_VERSION, options.record()),
        synthetic=is_synthetic,
        decode=lambda image_id, size: decode_file(root / image_id, size, options),
        file_hashes=hashes,
        group_name=str(cfg.get("group_name") or "group") if grouped else None,
        records=found,
        scans=records,
    )


def from_npz(path: Path, cfg: DictConfig, name: str) -> Dataset:
    images, splits = load_npz(path)
    class_names = class_names_for(cfg.get("class_names"), splits)
    options = DecodeOptions.from_config(cfg)
    hashes = {
        f"{split}/{i}": hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        for split, array in images.items()
        for i, image in enumerate(array)
    }

    def array_of(image_id: str) -> np.ndarray:
        split, index = image_id.split("/")
        return images[split][int(index)]

    ids = [i for split in splits.values() for i in split.ids]
    scans = scan_arrays(ids, array_of)
    splits, found = audited(cfg, splits, scans)
    found["skipped"] = []
    found["split_from"] = "official"
    found["decoding"] = options.record()  # what an export states of its input (no file rules applied)
    return Dataset(
        name=name,
        class_names=tuple(class_names),
        splits=splits,
        fingerprint=fingerprint(hashes, class_names, splits, (DECODER_VERSION, options.record())),
        # the arrays' dtype and image shape too: the hashes are of raw bytes, which decode by dtype
        decoding=digest(DECODER_VERSION, options.record(),
                        {split: (str(array.dtype), array.shape[1:]) for split, array in images.items()}),
        synthetic=False,
        decode=lambda image_id, size: decode_array(array_of(image_id), size, options),
        file_hashes=hashes,
        records=found,
        scans=scans,
    )


def synthetic_parameters(cfg: DictConfig) -> dict:
    """The synthetic dataset's settings as `synthetic.generate` and `synthetic.dataset_dir` take them."""
    return {
        "n_per_class": cfg.n_per_class,
        "size": cfg.size,
        "seed": cfg.seed,
        "difficulty": cfg.difficulty,
        "slices_per_patient": int(cfg.get("slices_per_patient") or 1),
    }


def check_path(cfg: DictConfig) -> None:
    """A user's dataset.path that is not there, named before the run imports TensorFlow and probes its
    weights: a typo then stops at once, without the ImageNet warning first. The loaders check it too;
    so are dataset.dedupe, which the audit would reach only after every image is decoded, and the
    decoding's choices and dataset.on_bad_image, which the spawned scan would reach first."""
    check_dataset_values(cfg)
    check_data_path(cfg)


def check_dataset_values(cfg: DictConfig) -> None:
    """The dataset's choices that need no file: dedupe, the decoding's, on_bad_image."""
    check_dedupe(cfg.get("dedupe", "warn"))
    DecodeOptions.from_config(cfg)
    check_bad_image_action(cfg.get("on_bad_image", "skip"))


def check_data_path(cfg: DictConfig) -> None:
    """The folder or .npz dataset.path names is there (the synthetic data has none)."""
    if cfg.loader == "folder":
        check_root(user_path(cfg))
    elif cfg.loader == "medmnist":
        check_file(user_path(cfg))


def load_dataset(cfg: DictConfig, data_dir: Path, cache_dir: Path | None = None) -> Dataset:
    """Build the Dataset the `dataset` config group describes (generating the synthetic one once).

    `cache_dir` keeps the decode-once scan of every file, so a second load decodes nothing.
    """
    name = dataset_name(cfg)
    if cfg.loader == "synthetic":
        try:
            root = synthetic.generate(data_dir, **synthetic_parameters(cfg))
        except ValueError as error:
            raise BenchmarkError(f"synthetic dataset: {error} (see conf/dataset/synthetic.yaml)") from None
        dataset = from_folder(root, cfg, name, True, cache_dir)
    elif cfg.loader == "folder":
        dataset = from_folder(user_path(cfg), cfg, name, False, cache_dir)
    elif cfg.loader == "medmnist":
        dataset = from_npz(user_path(cfg), cfg, name)
    else:
        raise BenchmarkError(f"dataset.loader={cfg.loader!r} is unknown: use one of {', '.join(LOADERS)}")
    log.info(
        "dataset %s: classes %s, %s%s",
        name,
        list(dataset.class_names),
        ", ".join(f"{s} {len(dataset.splits[s])}" for s in SPLITS),
        f" (split by {dataset.group_name})" if dataset.group_name else "",
    )
    return dataset
