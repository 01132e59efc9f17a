"""One finished slice: anatomy, confounders and lesion composed, then seen through a simulated scanner.

The order of the random draws is part of the output: changing it changes every image, so it must not
move without bumping GENERATOR_VERSION.
"""

from dataclasses import dataclass

import numpy as np

from benchmark.data.synthetic.anatomy import render_anatomy
from benchmark.data.synthetic.fields import blur, lerp, smooth_field, white_field
from benchmark.data.synthetic.geometry import grid
from benchmark.data.synthetic.lesions import add_lesion, confounders

CLASS_NAMES: tuple[str, ...] = ("normal", "pneumonia", "tumor")  # also the folder names of the tree

MIN_SIZE = 32  # below this the anatomy (ribs, vessels) is smaller than a pixel

# Noise and acquisition variation.
NOISE_SIGMA = (0.012, 0.045)  # Gaussian noise std at difficulty 0 and 1
NOISE_GRAIN_PX = 0.7  # noise correlation length: CT noise is not white
MOTTLE = 0.012  # amplitude of slow background texture
MOTTLE_CELLS = 12  # blobs of background texture across the image
PARTIAL_VOLUME_PX = 0.45  # resolution blur at 128 px
GAIN_JITTER = 0.04  # per-image window/level wobble (std, at difficulty 0.5)


@dataclass(frozen=True)
class _Acquisition:
    """Scanner effects, drawn before the lesion so paired renders differ only by the lesion."""

    noise: np.ndarray
    gain: float
    offset: float


def _sample_acquisition(rng: np.random.Generator, size: int, difficulty: float) -> _Acquisition:
    """Correlated grain plus slow mottle, and a per-image gain/offset; all grow with difficulty."""
    grain = white_field(rng, size, NOISE_GRAIN_PX)
    mottle = smooth_field(rng, size, MOTTLE_CELLS)
    noise = lerp(NOISE_SIGMA, difficulty) * grain + MOTTLE * mottle
    spread = GAIN_JITTER * (0.5 + difficulty)
    return _Acquisition(noise, 1.0 + rng.normal(0.0, spread), rng.normal(0.0, spread / 2))


def _finish(image: np.ndarray, acquisition: _Acquisition) -> np.ndarray:
    """Scanner resolution, noise and window wobble, then 8-bit quantisation."""
    blurred = blur(image, PARTIAL_VOLUME_PX * image.shape[0] / 128)
    out = blurred * acquisition.gain + acquisition.offset + acquisition.noise
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def check_common(size: int, difficulty: float) -> None:
    """Checks render_slice and dataset_dir share: a bad value fails before anything is drawn or named."""
    if int(size) != size or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")


def render_slice(label: str, rng: np.random.Generator, size: int, difficulty: float) -> np.ndarray:
    """One uint8 (size, size) grayscale slice of class `label`.

    Random draws happen in a fixed order (anatomy, confounders, scanner noise, lesion), so two labels
    rendered from identically seeded generators share everything but the lesion.
    """
    if label not in CLASS_NAMES:
        raise ValueError(f"unknown label {label!r}; valid labels: {', '.join(CLASS_NAMES)}")
    check_common(size, difficulty)
    u, v = grid(int(size))
    anatomy = render_anatomy(u, v, rng, difficulty)
    image = anatomy.image + confounders(anatomy, rng, difficulty)
    acquisition = _sample_acquisition(rng, int(size), difficulty)
    return _finish(add_lesion(label, image, anatomy, rng, difficulty), acquisition)


# Slices of one patient (slices_per_patient > 1): one anatomy, lesion and scan, seen several times.
SLICE_SHIFT_PX = 0.75  # per-slice in-plane jitter, uniform up to this many pixels each way (at 128 px)
SLICE_NOISE = 0.35  # per-slice extra grain, as a fraction of the scan's grain amplitude


def _shift(image: np.ndarray, rows: float, cols: float) -> np.ndarray:
    """Bilinear sub-pixel shift; the border is air, so what wraps round the edge is air too."""
    out = np.zeros_like(image)
    r0, c0 = int(np.floor(rows)), int(np.floor(cols))
    fr, fc = rows - r0, cols - c0
    for dr, wr in ((r0, 1 - fr), (r0 + 1, fr)):
        for dc, wc in ((c0, 1 - fc), (c0 + 1, fc)):
            out += wr * wc * np.roll(image, (dr, dc), axis=(0, 1))
    return out


def render_patient(
    label: str,
    patient_rng: np.random.Generator,
    slice_rngs: list[np.random.Generator],
    size: int,
    difficulty: float,
) -> list[np.ndarray]:
    """Near-identical uint8 slices of one patient.

    Anatomy, confounders, the scan's noise and window, and the lesion are drawn once from `patient_rng`
    (in render_slice's order); each slice adds, from its own generator in `slice_rngs`, a sub-pixel shift
    and a little extra grain. Neighbouring slices of a real scan are this alike, which is why splitting
    them across train and test leaks the patient.
    """
    if label not in CLASS_NAMES:
        raise ValueError(f"unknown label {label!r}; valid labels: {', '.join(CLASS_NAMES)}")
    check_common(size, difficulty)
    size = int(size)
    u, v = grid(size)
    anatomy = render_anatomy(u, v, patient_rng, difficulty)
    image = anatomy.image + confounders(anatomy, patient_rng, difficulty)
    scan = _sample_acquisition(patient_rng, size, difficulty)
    image = add_lesion(label, image, anatomy, patient_rng, difficulty)
    reach = SLICE_SHIFT_PX * size / 128
    grain = SLICE_NOISE * lerp(NOISE_SIGMA, difficulty)
    slices = []
    for rng in slice_rngs:
        rows, cols = rng.uniform(-reach, reach, size=2)
        noise = scan.noise + grain * white_field(rng, size, NOISE_GRAIN_PX)
        slices.append(_finish(_shift(image, rows, cols), _Acquisition(noise, scan.gain, scan.offset)))
    return slices
