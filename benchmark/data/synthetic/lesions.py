"""The class signal and its look-alikes: ground-glass opacity, tumours, and confounders in every class."""

import math

import numpy as np

from benchmark.data.synthetic.anatomy import LUNG, SOFT_TISSUE, VESSEL_CONTRAST, Anatomy
from benchmark.data.synthetic.fields import (
    gaussian_splats,
    lerp,
    sample_pixels,
    sigmoid,
    smooth_field,
    white_field,
)

# Confounders shared by all classes, more of them at higher difficulty.
CONFOUNDERS_AT_MAX = 3.0  # mean count of nodule-like vessel cross-sections at difficulty 1
CONFOUNDER_SIGMA_PX = (1.2, 2.0)  # at 128 px
DEPENDENT_HAZE_MAX = 0.22  # posterior (gravity-dependent) haze at difficulty 1, fraction of tissue

# Pneumonia: patchy ground-glass opacity.
GGO_CELLS = 11  # opacity blobs across the image (fewer = larger patches)
GGO_COVERAGE = ((0.25, 0.6), (0.12, 0.35))  # fraction of the affected lung(s), at difficulty 0 and 1
GGO_OPACITY = ((0.45, 0.7), (0.18, 0.3))  # haze strength, fraction of (SOFT_TISSUE - LUNG)
GGO_SOFTNESS = 0.45  # blob edge softness, in field standard deviations

# Tumour: one compact soft-edged nodule or mass.
TUMOR_RADIUS = ((0.05, 0.09), (0.02, 0.035))  # fraction of the image size, at difficulty 0 and 1
TUMOR_OPACITY = ((0.75, 1.0), (0.3, 0.5))  # fraction of (SOFT_TISSUE - LUNG)
TUMOR_EDGE = (0.1, 0.25)  # soft-edge width, as a fraction of the radius
TUMOR_LOBULATION = 0.12  # max amplitude of each lobulation harmonic
TUMOR_CANDIDATES = 32  # candidate centres tried per tumour


def _uniform_at(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...], t: float) -> float:
    """Uniform draw from a range that itself slides from ranges[0] to ranges[1] with difficulty t."""
    return rng.uniform(lerp((ranges[0][0], ranges[1][0]), t), lerp((ranges[0][1], ranges[1][1]), t))


def confounders(anatomy: Anatomy, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Lesion look-alikes present in every class: thick vessel cross-sections and dependent haze."""
    size = anatomy.u.shape[0]
    lungs = anatomy.lungs[0] + anatomy.lungs[1]
    count = int(rng.poisson(CONFOUNDERS_AT_MAX * difficulty))
    layer = np.zeros_like(lungs)
    if count:
        rows, cols = sample_pixels(lungs**4, count, rng)
        sigmas = rng.uniform(*CONFOUNDER_SIGMA_PX, count) * size / 128
        amps = VESSEL_CONTRAST * (SOFT_TISSUE - LUNG) * rng.uniform(0.8, 1.1, count)
        layer = gaussian_splats(size, rows, cols, sigmas, amps)
    posterior = anatomy.v[lungs > 0.5].max() if np.any(lungs > 0.5) else 0.5
    haze = rng.uniform(0.0, DEPENDENT_HAZE_MAX * difficulty) * (SOFT_TISSUE - LUNG)
    gradient = sigmoid((anatomy.v - posterior + 0.15) / 0.05)
    return (layer + haze * gradient) * lungs


def _pneumonia(anatomy: Anatomy, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Patchy ground-glass opacity: soft blobs of a thresholded smooth field in one or both lungs."""
    size = anatomy.u.shape[0]
    sides = [(0,), (1,), (0, 1)][int(rng.integers(3))]
    region = sum(anatomy.lungs[i] for i in sides)
    field = smooth_field(rng, size, GGO_CELLS)
    inside = field[region > 0.5]
    coverage = _uniform_at(rng, GGO_COVERAGE, difficulty)
    threshold = np.quantile(inside, 1.0 - coverage) if inside.size else 0.0
    patches = sigmoid((field - threshold) / GGO_SOFTNESS)
    texture = 1.0 + 0.25 * white_field(rng, size, 1.0)
    opacity = _uniform_at(rng, GGO_OPACITY, difficulty) * (SOFT_TISSUE - LUNG)
    return opacity * patches * texture * region


def _fitting_centre(lungs: np.ndarray, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    """A lung position where a disc of `radius` pixels lies inside the lung (first of a fixed batch of
    candidates that fits, so the number of random draws never depends on the anatomy)."""
    rows, cols = sample_pixels(lungs, TUMOR_CANDIDATES, rng)
    angles = np.linspace(0.0, 2.0 * math.pi, 16, endpoint=False)
    ring_r = np.rint(rows[:, None] + radius * np.sin(angles)).astype(int).clip(0, lungs.shape[0] - 1)
    ring_c = np.rint(cols[:, None] + radius * np.cos(angles)).astype(int).clip(0, lungs.shape[1] - 1)
    fits = np.flatnonzero(lungs[ring_r, ring_c].min(axis=1) > 0.5)
    best = int(fits[0]) if fits.size else 0
    return float(rows[best]), float(cols[best])


def _tumor(anatomy: Anatomy, rng: np.random.Generator, difficulty: float) -> tuple[np.ndarray, float]:
    """One compact soft-edged nodule/mass, sometimes lobulated, inside a lung: (profile, grey level)."""
    size = anatomy.u.shape[0]
    lungs = anatomy.lungs[0] + anatomy.lungs[1]
    radius = _uniform_at(rng, TUMOR_RADIUS, difficulty) * size
    row, col = _fitting_centre(lungs, radius, rng)
    rows, cols = np.mgrid[0:size, 0:size].astype(float)
    dist = np.hypot(rows - row, cols - col)
    theta = np.arctan2(rows - row, cols - col)
    lobes = sum(
        rng.uniform(0.0, TUMOR_LOBULATION) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        for k in (2, 3, 5)
    )
    edge = rng.uniform(*TUMOR_EDGE) * radius
    grey = LUNG + _uniform_at(rng, TUMOR_OPACITY, difficulty) * (SOFT_TISSUE - LUNG)
    return sigmoid((radius * (1.0 + lobes) - dist) / edge), grey


def add_lesion(
    label: str, image: np.ndarray, anatomy: Anatomy, rng: np.random.Generator, difficulty: float
) -> np.ndarray:
    """The class signal; normal slices are returned unchanged."""
    if label == "pneumonia":
        return image + _pneumonia(anatomy, rng, difficulty)
    if label == "tumor":
        # A solid mass hides the vessels it engulfs: brighten towards its grey, never darken.
        profile, grey = _tumor(anatomy, rng, difficulty)
        return image + profile * np.clip(grey - image, 0.0, None)
    return image
