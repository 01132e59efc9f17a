"""Random fields and blob sums on the pixel grid: the texture, noise and dot-drawing primitives.

Everything here works in pixels on a (size, size) float image and is shared by the anatomy, the lesions
and the scanner model, so each of those draws its randomness through the same few, cheap routines.
"""

import math

import numpy as np
from PIL import Image

SPLAT_CUTOFF = 3.5  # Gaussian blobs are drawn out to this many sigmas


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function written via tanh, which cannot overflow for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def lerp(pair: tuple[float, float], t: float) -> float:
    """Linear interpolation from pair[0] (t = 0) to pair[1] (t = 1), e.g. a setting across difficulty."""
    return pair[0] + (pair[1] - pair[0]) * t


def _gaussian(offset: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """Unnormalised Gaussian profile."""
    return np.exp(-0.5 * (offset / sigma) ** 2)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Small-kernel separable Gaussian blur as a sum of shifted copies (reflect-padded edges).

    Only used for sub-structure scales (a few pixels); large-scale smoothness comes from smooth_field.
    Shift-and-add rather than BLAS matrix products, which can crawl when threads compete for 2 cores.
    """
    size = image.shape[0]
    radius = min(max(1, math.ceil(3.0 * sigma_px)), size - 1)
    taps = _gaussian(np.arange(-radius, radius + 1), sigma_px)
    taps /= taps.sum()
    padded = np.pad(image, radius, mode="reflect")
    rows = sum(t * padded[i : i + size, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i : i + size] for i, t in enumerate(taps))


def smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-std random field with about `cells` independent blobs across the image:
    a coarse noise grid upsampled bicubically, which costs almost nothing at any resolution."""
    coarse = rng.standard_normal((cells + 3, cells + 3), dtype=np.float32)
    box = (1, 1, cells + 1, cells + 1)  # skip the outer cells, where bicubic has no neighbours
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC, box=box)
    field = np.asarray(image, dtype=float)
    return (field - field.mean()) / (field.std() + 1e-12)


def white_field(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std noise correlated over `sigma_px` pixels (fine grain)."""
    field = blur(rng.standard_normal((size, size), dtype=np.float32), sigma_px)
    return (field - field.mean()) / (field.std() + 1e-12)


def gaussian_splats(
    size: int, rows: np.ndarray, cols: np.ndarray, sigmas: np.ndarray, amps: np.ndarray
) -> np.ndarray:
    """Sum of small isotropic Gaussian blobs, each evaluated only on its own patch and scattered with
    bincount, so the cost grows with the number of blobs rather than with the image area."""
    offsets = np.arange(-math.ceil(SPLAT_CUTOFF * sigmas.max()), math.ceil(SPLAT_CUTOFF * sigmas.max()) + 1)
    ys = np.rint(rows).astype(int)[:, None] + offsets
    xs = np.rint(cols).astype(int)[:, None] + offsets
    wy = _gaussian(ys - rows[:, None], sigmas[:, None]) * ((ys >= 0) & (ys < size))
    wx = _gaussian(xs - cols[:, None], sigmas[:, None]) * ((xs >= 0) & (xs < size))
    weights = amps[:, None, None] * wy[:, :, None] * wx[:, None, :]
    flat = np.clip(ys, 0, size - 1)[:, :, None] * size + np.clip(xs, 0, size - 1)[:, None, :]
    return np.bincount(flat.ravel(), weights.ravel(), minlength=size * size).reshape(size, size)


def sample_pixels(weights: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) positions drawn with probability proportional to `weights`, with sub-pixel jitter."""
    cdf = np.cumsum(np.clip(weights, 0.0, None).ravel(), dtype=float)
    idx = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right").clip(0, cdf.size - 1)
    rows, cols = np.divmod(idx, weights.shape[1])
    jitter = rng.uniform(-0.5, 0.5, size=(2, count))
    return rows + jitter[0], cols + jitter[1]
