r"""Deterministic synthetic chest-CT dataset: the benchmark's built-in default.

Renders lung-window axial chest slices for three classes ("normal", "pneumonia", "tumor") and writes
them once as an ordinary image-folder tree, so the rest of the pipeline reads them exactly like a user's
own data. Every image depends only on (seed, class, index, size, difficulty), which makes runs
reproducible and lets a finished tree be reused as a cache.

With slices_per_patient=k > 1 the images come in "patients" of k near-identical slices (one anatomy and
lesion, independent noise and a pixel of jitter), named <class>/<class>_p<patient:04d>_s<slice:02d>.png
with patient numbers unique across classes, so `dataset.group_pattern='_(p\d+)_'` groups them. It is the
demo of patient leakage: split by image, a patient's slices land in both train and test.

Geometry is drawn in normalised coordinates: u runs left to right and v anterior (top) to posterior
(bottom), both in [-1, 1]; the patient's left is on the image right, as radiologists read CT.
Intensities are floats in [0, 1] until the very end, where they are quantised to 8-bit grey.

This module names and writes the tree; the image itself is built by the submodules:
    render    one finished slice: composes the parts below, then the scanner model and quantisation
    anatomy   torso, mediastinum, lungs, ribs and vessels: everything every class shares
    lesions   ground-glass opacity, tumours, and the look-alike confounders present in every class
    geometry  the normalised coordinate grid and the soft-edged shapes drawn on it
    fields    random fields, blur and Gaussian splats, the pixel-level primitives
"""

import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data.synthetic.render import CLASS_NAMES, check_common, render_patient, render_slice
from benchmark.files import publish_directory

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_VERSION",
    "PATIENT_PATTERN",
    "dataset_dir",
    "expected_files",
    "generate",
    "render_patient",
    "render_slice",
]

logger = logging.getLogger(__name__)

GENERATOR_VERSION: int = 1  # bump when the rendering changes, so cached trees are regenerated
PATIENT_PATTERN = r"_(p\d+)_"  # dataset.group_pattern that finds the patient of a slices_per_patient > 1 tree


def dataset_dir(
    data_dir: Path, n_per_class: int, size: int, seed: int, difficulty: float, slices_per_patient: int = 1
) -> Path:
    """The folder keyed by every parameter plus GENERATOR_VERSION, so a stale tree is never reused
    (`-k<slices>` is appended only for slices_per_patient > 1: the default name is unchanged)."""
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    if (
        isinstance(slices_per_patient, bool)
        or int(slices_per_patient) != slices_per_patient
        or slices_per_patient < 1
    ):
        raise ValueError(f"slices_per_patient must be an integer >= 1, got {slices_per_patient!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_common(size, difficulty)
    parts = (
        f"v{GENERATOR_VERSION}",
        f"n{int(n_per_class)}",
        f"s{int(size)}",
        f"seed{int(seed)}",
        f"d{float(difficulty)}",
    )
    if int(slices_per_patient) > 1:
        parts = (*parts, f"k{int(slices_per_patient)}")
    return Path(data_dir) / "-".join(("synthetic", *parts))


def expected_files(n_per_class: int, slices_per_patient: int = 1) -> list[str]:
    """Every image path a finished tree holds, relative to it (the names _write_tree and _write_patients
    write): what `generate` checks an existing tree against."""
    n_per_class, k = int(n_per_class), int(slices_per_patient)
    if k == 1:
        return [f"{label}/{label}_{i:04d}.png" for label in CLASS_NAMES for i in range(n_per_class)]
    n_patients = -(-n_per_class // k)
    return [
        f"{label}/{label}_p{class_idx * n_patients + j:04d}_s{s:02d}.png"
        for class_idx, label in enumerate(CLASS_NAMES)
        for j in range(n_patients)
        for s in range(min(k, n_per_class - j * k))
    ]


def _write_tree(root: Path, n_per_class: int, size: int, seed: int, difficulty: float) -> None:
    """Render every image into `root`, each from its own generator seeded by (seed, class, index), so an
    image never depends on how many others were drawn before it.

    render_slice is looked up in this module's namespace at call time, which is what lets tests replace
    `synthetic.render_slice`.
    """
    for class_idx, label in enumerate(CLASS_NAMES):
        class_dir = root / label
        class_dir.mkdir()
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, class_idx, i])
            pixels = render_slice(label, rng, size, difficulty)
            Image.fromarray(pixels).save(class_dir / f"{label}_{i:04d}.png")


def _write_patients(
    root: Path, n_per_class: int, size: int, seed: int, difficulty: float, slices_per_patient: int
) -> None:
    """n_per_class slices per class in patients of `slices_per_patient` (the last one may have fewer).

    Patient j of class c is seeded by (seed, c, j, 0) and its slice s by (seed, c, j, 1, s); patient
    numbers run on across classes, so no two classes share a patient id.
    """
    n_patients = -(-n_per_class // slices_per_patient)
    for class_idx, label in enumerate(CLASS_NAMES):
        class_dir = root / label
        class_dir.mkdir()
        for j in range(n_patients):
            count = min(slices_per_patient, n_per_class - j * slices_per_patient)
            patient_rng = np.random.default_rng([seed, class_idx, j, 0])
            slice_rngs = [np.random.default_rng([seed, class_idx, j, 1, s]) for s in range(count)]
            patient = class_idx * n_patients + j
            for s, pixels in enumerate(render_patient(label, patient_rng, slice_rngs, size, difficulty)):
                Image.fromarray(pixels).save(class_dir / f"{label}_p{patient:04d}_s{s:02d}.png")


def generate(
    data_dir: Path, n_per_class: int, size: int, seed: int, difficulty: float, slices_per_patient: int = 1
) -> Path:
    """Write dataset_dir(...)/<class>/<class>_<i:04d>.png for every class, once; return the folder.

    With slices_per_patient > 1: <class>/<class>_p<patient:04d>_s<slice:02d>.png instead, n_per_class
    images per class in patients of that many near-identical slices (group them with PATIENT_PATTERN).

    An existing folder holding every expected image is returned untouched; one that lacks any is
    rendered again whole (with a warning), since a run would otherwise train on a damaged copy of a
    dataset that is meant to be reproducible. The tree is rendered into a hidden temporary sibling and
    renamed into place, so an interrupted run never leaves a half-written tree that looks complete.
    """
    target = dataset_dir(data_dir, n_per_class, size, seed, difficulty, slices_per_patient)
    damaged = target.is_dir()
    if damaged:
        expected = expected_files(n_per_class, slices_per_patient)
        missing = [name for name in expected if not (target / name).is_file()]  # deleted, a partial copy
        if not missing:
            return target
        logger.warning(
            "%s lacks %d of its %d images (%s%s): generating it again", target, len(missing), len(expected),
            missing[0], ", ..." if len(missing) > 1 else "",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info(
        "Generating synthetic chest-CT dataset (%d per class, %d px, seed %d, difficulty %s) in %s",
        n_per_class,
        size,
        seed,
        difficulty,
        target,
    )
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        if int(slices_per_patient) == 1:
            _write_tree(staging, int(n_per_class), int(size), int(seed), float(difficulty))
        else:
            args = (int(n_per_class), int(size), int(seed), float(difficulty), int(slices_per_patient))
            _write_patients(staging, *args)
        # a concurrent run that finished first wins; a damaged tree is swapped out only now
        publish_directory(staging, target, replace=damaged)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
