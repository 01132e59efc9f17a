"""Deterministic synthetic chest-CT dataset: the benchmark's built-in default.

Renders lung-window axial chest slices for three classes ("normal", "pneumonia", "tumor") and writes
them once as an ordinary image-folder tree, so the rest of the pipeline reads them exactly like a user's
own data. Every image depends only on (seed, class, index, size, difficulty), which makes runs
reproducible and lets a finished tree be reused as a cache.

Geometry is drawn in normalised coordinates: u runs left to right and v anterior (top) to posterior
(bottom), both in [-1, 1]; the patient's left is on the image right, as radiologists read CT.
Intensities are floats in [0, 1] until the very end, where they are quantised to 8-bit grey.
"""

import cmath
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("normal", "pneumonia", "tumor")
GENERATOR_VERSION: int = 1  # bump when the rendering changes, so cached trees are regenerated

MIN_SIZE = 32  # below this the anatomy (ribs, vessels) is smaller than a pixel

SPLAT_CUTOFF = 3.5  # Gaussian blobs are drawn out to this many sigmas

# Tissue grey levels on [0, 1], roughly a lung window with soft tissue kept mid-grey.
AIR = 0.04
LUNG = 0.14
FAT = 0.47
SOFT_TISSUE = 0.56
HEART = 0.50
SKIN = 0.70
MARROW = 0.74
BONE = 0.93

# Anatomy: how much shapes and positions wander between patients (scaled up with difficulty).
# The layout fractions inside the _sample_* functions are proportions of a typical adult chest CT,
# relative to the torso's half-axes; they describe anatomy rather than tune the benchmark.
ANATOMY_JITTER = 0.5  # variation multiplier at difficulty 0; difficulty 1 adds another 1.0
EDGE_PX = 0.6  # anti-aliasing width of organ boundaries, in pixels
MASK_TAIL = 14  # masks are evaluated out to this many edge widths beyond the outline (sigmoid < 1e-6)
SKIN_PX = 1.3  # skin thickness at 128 px
FAT_LAYER = 0.045  # subcutaneous fat thickness, in normalised units
CHEST_WALL = 0.085  # chest wall thickness (lungs stay this far inside the body outline), normalised
RIBS_PER_SIDE = (4, 7)  # rib cross-sections per side, [low, high)

# Vessels: bright dots and short branches radiating from the hila.
VESSEL_SEEDS = (45, 70)  # vessel seeds per slice, [low, high)
VESSEL_CHAIN = 4  # max dots per branch
VESSEL_SIGMA_PX = (0.5, 1.0)  # Gaussian width at 128 px, far from the hilum
VESSEL_CONTRAST = 0.42  # peak brightening of a vessel, as a fraction of (SOFT_TISSUE - LUNG)
HILUM_FALLOFF = 0.22  # distance over which vessel density and calibre decay from the hilum

# Confounders shared by all classes, more of them at higher difficulty.
CONFOUNDERS_AT_MAX = 3.0  # mean count of nodule-like vessel cross-sections at difficulty 1
CONFOUNDER_SIGMA_PX = (1.2, 2.0)  # at 128 px
DEPENDENT_HAZE_MAX = 0.22  # posterior (gravity-dependent) haze at difficulty 1, fraction of tissue

# Noise and acquisition variation.
NOISE_SIGMA = (0.012, 0.045)  # Gaussian noise std at difficulty 0 and 1
NOISE_GRAIN_PX = 0.7  # noise correlation length: CT noise is not white
MOTTLE = 0.012  # amplitude of slow background texture
MOTTLE_CELLS = 12  # blobs of background texture across the image
PARTIAL_VOLUME_PX = 0.45  # resolution blur at 128 px
GAIN_JITTER = 0.04  # per-image window/level wobble (std, at difficulty 0.5)

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


@dataclass(frozen=True)
class _Shape:
    """A rotated superellipse in normalised coordinates, optionally with a wobbly outline."""

    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0
    power: float = 2.0
    harmonics: tuple[tuple[int, float, float], ...] = ()  # (order, amplitude, phase) of the outline

    def rho(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Normalised radius: 1 on the outline, < 1 inside."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        du, dv = u - self.cx, v - self.cy
        x, y = (du * cos + dv * sin) / self.ax, (dv * cos - du * sin) / self.ay
        if self.power == 2.0:
            rho = np.sqrt(x * x + y * y)
        else:
            rho = (np.abs(x) ** self.power + np.abs(y) ** self.power) ** (1.0 / self.power)
        if self.harmonics:
            rho = rho / self._wobble(x, y)
        return rho

    def _wobble(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """1 + sum a*cos(k*theta + phase), as Re(a e^{i phase} z^k) with z = e^{i theta}: complex
        products instead of an arctan2 and a cosine per order over the whole grid."""
        z = (x + 1j * y) / (np.hypot(x, y) + 1e-12)
        powers = [np.ones_like(z)]
        for _ in range(max(k for k, _, _ in self.harmonics)):
            powers.append(powers[-1] * z)
        return 1.0 + sum((a * cmath.rect(1.0, p) * powers[k]).real for k, a, p in self.harmonics)

    def reach(self, grow: float, px: float) -> float:
        """Distance from the centre beyond which mask() is below 1e-6, so it need not be evaluated."""
        scale = min(self.ax, self.ay)
        wobble = 1.0 + sum(abs(a) for _, a, _ in self.harmonics)
        norm_bound = 2.0 ** (0.5 - 1.0 / self.power)  # superellipse norm vs Euclidean norm
        return (scale + grow + MASK_TAIL * EDGE_PX * px) / scale * max(self.ax, self.ay) * wobble * norm_bound

    def soft(self, rho: np.ndarray, px: float, grow: float = 0.0) -> np.ndarray:
        """Anti-aliased inside indicator from precomputed rho(); `grow` widens the outline."""
        scale = min(self.ax, self.ay)
        return _sigmoid((1.0 - rho * scale / (scale + grow)) * (scale + grow) / (EDGE_PX * px))

    def window(self, u: np.ndarray, v: np.ndarray, px: float, grow: float = 0.0) -> tuple[slice, slice]:
        """The pixel window outside which the mask vanishes, so small shapes cost little to draw."""
        reach = self.reach(grow, px)
        rows = np.flatnonzero(np.abs(v[:, 0] - self.cy) <= reach)
        cols = np.flatnonzero(np.abs(u[0, :] - self.cx) <= reach)
        if not (rows.size and cols.size):
            return slice(0, 0), slice(0, 0)
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def mask(self, u: np.ndarray, v: np.ndarray, px: float, grow: float = 0.0) -> np.ndarray:
        """Anti-aliased inside indicator; `grow` widens the outline by that many normalised units."""
        out = np.zeros_like(u)
        window = self.window(u, v, px, grow)
        out[window] = self.soft(self.rho(u[window], v[window]), px, grow)
        return out

    def paint(
        self, image: np.ndarray, u: np.ndarray, v: np.ndarray, px: float, value: float, grow: float = 0.0
    ) -> None:
        """Alpha-blend tissue of grey `value` over `image` in place, touching only the shape's window."""
        window = self.window(u, v, px, grow)
        alpha = self.soft(self.rho(u[window], v[window]), px, grow)
        image[window] += alpha * (value - image[window])


@dataclass(frozen=True)
class _Anatomy:
    """A rendered lesion-free slice plus the geometry lesions need."""

    image: np.ndarray
    lungs: tuple[np.ndarray, np.ndarray]  # soft masks, image-left then image-right
    u: np.ndarray
    v: np.ndarray
    px: float  # size of one pixel in normalised units


@dataclass(frozen=True)
class _Acquisition:
    """Scanner effects, drawn before the lesion so paired renders differ only by the lesion."""

    noise: np.ndarray
    gain: float
    offset: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _lerp(pair: tuple[float, float], t: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * t


def _uniform_at(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...], t: float) -> float:
    """Uniform draw from a range that itself slides from ranges[0] to ranges[1] with difficulty t."""
    return rng.uniform(_lerp((ranges[0][0], ranges[1][0]), t), _lerp((ranges[0][1], ranges[1][1]), t))


def _paint(image: np.ndarray, alpha: np.ndarray, value: float | np.ndarray) -> np.ndarray:
    """Alpha-blend a tissue of grey `value` over the image."""
    return image + alpha * (value - image)


def _harmonics(rng: np.random.Generator, amplitude: float) -> tuple[tuple[int, float, float], ...]:
    """Random low-order outline wobble; higher orders get less so outlines stay smooth."""
    return tuple((k, rng.normal(0.0, amplitude) / k, rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4, 5))


def _gaussian(offset: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """Unnormalised Gaussian profile."""
    return np.exp(-0.5 * (offset / sigma) ** 2)


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Small-kernel separable Gaussian blur as a sum of shifted copies (reflect-padded edges).

    Only used for sub-structure scales (a few pixels); large-scale smoothness comes from _smooth_field.
    Shift-and-add rather than BLAS matrix products, which can crawl when threads compete for 2 cores.
    """
    size = image.shape[0]
    radius = min(max(1, math.ceil(3.0 * sigma_px)), size - 1)
    taps = _gaussian(np.arange(-radius, radius + 1), sigma_px)
    taps /= taps.sum()
    padded = np.pad(image, radius, mode="reflect")
    rows = sum(t * padded[i : i + size, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i : i + size] for i, t in enumerate(taps))


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-std random field with about `cells` independent blobs across the image:
    a coarse noise grid upsampled bicubically, which costs almost nothing at any resolution."""
    coarse = rng.standard_normal((cells + 3, cells + 3), dtype=np.float32)
    box = (1, 1, cells + 1, cells + 1)  # skip the outer cells, where bicubic has no neighbours
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC, box=box)
    field = np.asarray(image, dtype=float)
    return (field - field.mean()) / (field.std() + 1e-12)


def _white_field(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std noise correlated over `sigma_px` pixels (fine grain)."""
    field = _blur(rng.standard_normal((size, size), dtype=np.float32), sigma_px)
    return (field - field.mean()) / (field.std() + 1e-12)


def _gaussian_splats(
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


def _sample_pixels(
    weights: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) positions drawn with probability proportional to `weights`, with sub-pixel jitter."""
    cdf = np.cumsum(np.clip(weights, 0.0, None).ravel(), dtype=float)
    idx = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right").clip(0, cdf.size - 1)
    rows, cols = np.divmod(idx, weights.shape[1])
    jitter = rng.uniform(-0.5, 0.5, size=(2, count))
    return rows + jitter[0], cols + jitter[1]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    return u, v


def _to_px(coord: float, size: int) -> float:
    """Normalised coordinate -> pixel index (inverse of _grid)."""
    return (coord + 1.0) * size / 2.0 - 0.5


# --------------------------------------------------------------------------- anatomy


def _sample_body(rng: np.random.Generator, jitter: float) -> _Shape:
    return _Shape(
        cx=rng.normal(0.0, 0.02 * jitter),
        cy=0.03 + rng.normal(0.0, 0.02 * jitter),
        ax=float(np.clip(0.84 + rng.normal(0.0, 0.04 * jitter), 0.72, 0.93)),
        ay=float(np.clip(0.60 + rng.normal(0.0, 0.04 * jitter), 0.50, 0.70)),
        angle=rng.normal(0.0, 0.03 * jitter),
        power=rng.uniform(2.1, 2.6),
        harmonics=_harmonics(rng, 0.02 * jitter),
    )


def _body_layers(body: _Shape, body_rho: np.ndarray, px: float) -> np.ndarray:
    """Air, skin, subcutaneous fat and muscle: the torso before any organ is drawn."""
    outer = body.soft(body_rho, px)
    below_skin = body.soft(body_rho, px, grow=-SKIN_PX * px * body_rho.shape[0] / 128)
    muscle = body.soft(body_rho, px, grow=-FAT_LAYER)
    image = _paint(np.full_like(body_rho, AIR), outer, SKIN)
    image = _paint(image, below_skin, FAT)
    return _paint(image, muscle, SOFT_TISSUE)


def _sample_mediastinum(rng: np.random.Generator, body: _Shape, jitter: float) -> dict[str, _Shape]:
    """Heart, descending aorta and vertebra, placed relative to the torso."""
    sy = body.ay / 0.6
    heart_scale = rng.uniform(0.8, 1.15)
    spine_y = body.cy + 0.45 * body.ay + rng.normal(0.0, 0.01 * jitter)
    spine_x = body.cx + rng.normal(0.0, 0.01 * jitter)
    return {
        "heart": _Shape(
            body.cx + 0.1 + rng.normal(0, 0.03 * jitter),
            body.cy - 0.12 * sy,
            0.27 * heart_scale,
            0.17 * heart_scale * sy,
            angle=rng.normal(-0.55, 0.1),
            harmonics=_harmonics(rng, 0.03),
        ),
        "aorta": _Shape(spine_x + 0.1, spine_y - 0.1 * sy, 0.055, 0.055),
        "vertebra": _Shape(spine_x, spine_y, 0.1 * sy, 0.09 * sy, power=2.3),
        "canal": _Shape(spine_x, spine_y + 0.15 * sy, 0.045 * sy, 0.04 * sy),
        "arch": _Shape(spine_x, spine_y + 0.16 * sy, 0.085 * sy, 0.07 * sy),
        "spinous": _Shape(spine_x, spine_y + 0.25 * sy, 0.022, 0.06 * sy),
    }


def _sample_lungs(rng: np.random.Generator, body: _Shape, jitter: float) -> tuple[_Shape, _Shape]:
    """Two lung outlines; the patient's right lung (image left) is usually a little larger."""
    lungs = []
    for side in (-1, 1):
        scale = 1.0 + (0.04 if side < 0 else 0.0) + rng.normal(0.0, 0.05 * jitter)
        lungs.append(
            _Shape(
                cx=body.cx + side * (0.45 * body.ax + rng.normal(0.0, 0.015 * jitter)),
                cy=body.cy - 0.02 + rng.normal(0.0, 0.02 * jitter),
                ax=0.40 * body.ax * scale,
                ay=0.66 * body.ay * scale,
                angle=side * rng.normal(-0.12, 0.06),
                power=rng.uniform(2.0, 2.6),
                harmonics=_harmonics(rng, 0.05 * jitter),
            )
        )
    return lungs[0], lungs[1]


def _lung_masks(
    u: np.ndarray,
    v: np.ndarray,
    px: float,
    body: _Shape,
    inside_wall: np.ndarray,
    lungs: tuple[_Shape, _Shape],
    organs: dict[str, _Shape],
) -> tuple[np.ndarray, np.ndarray]:
    """Lung fields carved out of the chest: they stop at the chest wall, heart, aorta and spine."""
    blocked = np.maximum.reduce(
        [
            organs["heart"].mask(u, v, px, grow=0.04),
            organs["aorta"].mask(u, v, px, grow=0.03),
            organs["vertebra"].mask(u, v, px, grow=0.06),
            organs["arch"].mask(u, v, px, grow=0.06),
            _Shape(body.cx, body.cy - 0.1, 0.05, 0.6).mask(u, v, px),  # anterior junction / mediastinum
        ]
    )
    keep = inside_wall * (1.0 - blocked)
    left, right = (lung.mask(u, v, px) * keep for lung in lungs)
    return left, right


def _paint_ribs(
    image: np.ndarray, u: np.ndarray, v: np.ndarray, px: float, body: _Shape, rng: np.random.Generator
) -> None:
    """Rib and sternum cross-sections: small bright ovals in the chest wall, tangential to the outline."""
    angles = []
    for start, stop in ((math.radians(100), math.radians(250)), (math.radians(-70), math.radians(80))):
        n = int(rng.integers(*RIBS_PER_SIDE))
        angles.extend(np.linspace(start, stop, n) + rng.normal(0.0, 0.06, n))
    depth = 1.0 - (CHEST_WALL + FAT_LAYER) / 2.0 / min(body.ax, body.ay)
    for t in angles:
        cx, cy = body.cx + depth * body.ax * math.cos(t), body.cy + depth * body.ay * math.sin(t)
        tangent = math.atan2(body.ay * math.cos(t), -body.ax * math.sin(t))
        rib = _Shape(cx, cy, rng.uniform(0.045, 0.08), rng.uniform(0.02, 0.028), angle=tangent)
        rib.paint(image, u, v, px, BONE)
    sternum = _Shape(body.cx, body.cy - depth * body.ay, rng.uniform(0.06, 0.09), 0.03, rng.normal(0.0, 0.1))
    sternum.paint(image, u, v, px, BONE)


def _paint_mediastinum(
    image: np.ndarray, u: np.ndarray, v: np.ndarray, px: float, organs: dict[str, _Shape]
) -> None:
    """Heart and aorta mid-grey; vertebra bright cortex around marrow, canal soft tissue."""
    organs["heart"].paint(image, u, v, px, HEART)
    organs["aorta"].paint(image, u, v, px, HEART)
    organs["arch"].paint(image, u, v, px, BONE)
    organs["spinous"].paint(image, u, v, px, BONE)
    organs["canal"].paint(image, u, v, px, SOFT_TISSUE)
    organs["vertebra"].paint(image, u, v, px, BONE)
    organs["vertebra"].paint(image, u, v, px, MARROW, grow=-2.0 * px)


def _vessels(anatomy: _Anatomy, hila: list[tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """Bright dots and short branches, denser and thicker near the hila, confined to the lungs."""
    size = anatomy.u.shape[0]
    lungs = anatomy.lungs[0] + anatomy.lungs[1]
    hilum_dist = np.minimum.reduce([np.hypot(anatomy.u - hu, anatomy.v - hv) for hu, hv in hila])
    rows, cols = _sample_pixels(
        lungs * (0.25 + np.exp(-hilum_dist / HILUM_FALLOFF)), int(rng.integers(*VESSEL_SEEDS)), rng
    )
    hu, hv = (np.array([_to_px(h[i], size) for h in hila]) for i in (0, 1))
    nearest = np.argmin(np.hypot(cols[:, None] - hu, rows[:, None] - hv), axis=1)
    dr, dc = rows - hv[nearest], cols - hu[nearest]
    dist = np.hypot(dr, dc) + 1e-6
    closeness = np.exp(-dist * anatomy.px / HILUM_FALLOFF)
    sigma = rng.uniform(*VESSEL_SIGMA_PX, rows.size) * (1.0 + 1.2 * closeness) * size / 128
    length = rng.integers(1, VESSEL_CHAIN + 1, rows.size)
    steps = np.arange(VESSEL_CHAIN)[:, None]
    chain_r = rows + steps * 1.2 * sigma * dr / dist
    chain_c = cols + steps * 1.2 * sigma * dc / dist
    amps = VESSEL_CONTRAST * (SOFT_TISSUE - LUNG) * rng.uniform(0.6, 1.0, rows.size) * (steps < length)
    splats = _gaussian_splats(
        size, chain_r.ravel(), chain_c.ravel(), (sigma * (1 - 0.12 * steps)).ravel(), amps.ravel()
    )
    return splats * lungs


def _render_anatomy(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, difficulty: float) -> _Anatomy:
    """The lesion-free slice: torso, mediastinum, lungs with vessels, bones."""
    px = 2.0 / u.shape[0]
    jitter = ANATOMY_JITTER + difficulty
    body = _sample_body(rng, jitter)
    organs = _sample_mediastinum(rng, body, jitter)
    lung_shapes = _sample_lungs(rng, body, jitter)
    body_rho = body.rho(u, v)
    lungs = _lung_masks(u, v, px, body, body.soft(body_rho, px, grow=-CHEST_WALL), lung_shapes, organs)
    image = _body_layers(body, body_rho, px)
    _paint_mediastinum(image, u, v, px, organs)
    image = _paint(image, lungs[0] + lungs[1], LUNG)
    _paint_ribs(image, u, v, px, body, rng)
    anatomy = _Anatomy(image, lungs, u, v, px)
    hila = [(s.cx - side * 0.6 * s.ax, s.cy) for s, side in zip(lung_shapes, (-1, 1), strict=True)]
    return _Anatomy(image + _vessels(anatomy, hila, rng), lungs, u, v, px)


def _confounders(anatomy: _Anatomy, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Lesion look-alikes present in every class: thick vessel cross-sections and dependent haze."""
    size = anatomy.u.shape[0]
    lungs = anatomy.lungs[0] + anatomy.lungs[1]
    count = int(rng.poisson(CONFOUNDERS_AT_MAX * difficulty))
    layer = np.zeros_like(lungs)
    if count:
        rows, cols = _sample_pixels(lungs**4, count, rng)
        sigmas = rng.uniform(*CONFOUNDER_SIGMA_PX, count) * size / 128
        amps = VESSEL_CONTRAST * (SOFT_TISSUE - LUNG) * rng.uniform(0.8, 1.1, count)
        layer = _gaussian_splats(size, rows, cols, sigmas, amps)
    posterior = anatomy.v[lungs > 0.5].max() if np.any(lungs > 0.5) else 0.5
    haze = rng.uniform(0.0, DEPENDENT_HAZE_MAX * difficulty) * (SOFT_TISSUE - LUNG)
    gradient = _sigmoid((anatomy.v - posterior + 0.15) / 0.05)
    return (layer + haze * gradient) * lungs


# --------------------------------------------------------------------------- lesions


def _pneumonia(anatomy: _Anatomy, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Patchy ground-glass opacity: soft blobs of a thresholded smooth field in one or both lungs."""
    size = anatomy.u.shape[0]
    sides = [(0,), (1,), (0, 1)][int(rng.integers(3))]
    region = sum(anatomy.lungs[i] for i in sides)
    field = _smooth_field(rng, size, GGO_CELLS)
    inside = field[region > 0.5]
    coverage = _uniform_at(rng, GGO_COVERAGE, difficulty)
    threshold = np.quantile(inside, 1.0 - coverage) if inside.size else 0.0
    patches = _sigmoid((field - threshold) / GGO_SOFTNESS)
    texture = 1.0 + 0.25 * _white_field(rng, size, 1.0)
    opacity = _uniform_at(rng, GGO_OPACITY, difficulty) * (SOFT_TISSUE - LUNG)
    return opacity * patches * texture * region


def _fitting_centre(lungs: np.ndarray, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    """A lung position where a disc of `radius` pixels lies inside the lung (first of a fixed batch of
    candidates that fits, so the number of random draws never depends on the anatomy)."""
    rows, cols = _sample_pixels(lungs, TUMOR_CANDIDATES, rng)
    angles = np.linspace(0.0, 2.0 * math.pi, 16, endpoint=False)
    ring_r = np.rint(rows[:, None] + radius * np.sin(angles)).astype(int).clip(0, lungs.shape[0] - 1)
    ring_c = np.rint(cols[:, None] + radius * np.cos(angles)).astype(int).clip(0, lungs.shape[1] - 1)
    fits = np.flatnonzero(lungs[ring_r, ring_c].min(axis=1) > 0.5)
    best = int(fits[0]) if fits.size else 0
    return float(rows[best]), float(cols[best])


def _tumor(anatomy: _Anatomy, rng: np.random.Generator, difficulty: float) -> tuple[np.ndarray, float]:
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
    return _sigmoid((radius * (1.0 + lobes) - dist) / edge), grey


def _add_lesion(
    label: str, image: np.ndarray, anatomy: _Anatomy, rng: np.random.Generator, difficulty: float
) -> np.ndarray:
    """The class signal; normal slices are returned unchanged."""
    if label == "pneumonia":
        return image + _pneumonia(anatomy, rng, difficulty)
    if label == "tumor":
        # A solid mass hides the vessels it engulfs: brighten towards its grey, never darken.
        profile, grey = _tumor(anatomy, rng, difficulty)
        return image + profile * np.clip(grey - image, 0.0, None)
    return image


# --------------------------------------------------------------------------- acquisition


def _sample_acquisition(rng: np.random.Generator, size: int, difficulty: float) -> _Acquisition:
    grain = _white_field(rng, size, NOISE_GRAIN_PX)
    mottle = _smooth_field(rng, size, MOTTLE_CELLS)
    noise = _lerp(NOISE_SIGMA, difficulty) * grain + MOTTLE * mottle
    spread = GAIN_JITTER * (0.5 + difficulty)
    return _Acquisition(noise, 1.0 + rng.normal(0.0, spread), rng.normal(0.0, spread / 2))


def _finish(image: np.ndarray, acquisition: _Acquisition) -> np.ndarray:
    """Scanner resolution, noise and window wobble, then 8-bit quantisation."""
    blurred = _blur(image, PARTIAL_VOLUME_PX * image.shape[0] / 128)
    out = blurred * acquisition.gain + acquisition.offset + acquisition.noise
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- public API


def _check_common(size: int, difficulty: float) -> None:
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
    _check_common(size, difficulty)
    u, v = _grid(int(size))
    anatomy = _render_anatomy(u, v, rng, difficulty)
    image = anatomy.image + _confounders(anatomy, rng, difficulty)
    acquisition = _sample_acquisition(rng, int(size), difficulty)
    return _finish(_add_lesion(label, image, anatomy, rng, difficulty), acquisition)


def dataset_dir(data_dir: Path, n_per_class: int, size: int, seed: int, difficulty: float) -> Path:
    """The folder keyed by every parameter plus GENERATOR_VERSION, so a stale tree is never reused."""
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_common(size, difficulty)
    parts = (
        f"v{GENERATOR_VERSION}",
        f"n{int(n_per_class)}",
        f"s{int(size)}",
        f"seed{int(seed)}",
        f"d{float(difficulty)}",
    )
    return Path(data_dir) / "-".join(("synthetic", *parts))


def _write_tree(root: Path, n_per_class: int, size: int, seed: int, difficulty: float) -> None:
    for class_idx, label in enumerate(CLASS_NAMES):
        class_dir = root / label
        class_dir.mkdir()
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, class_idx, i])
            pixels = render_slice(label, rng, size, difficulty)
            Image.fromarray(pixels).save(class_dir / f"{label}_{i:04d}.png")


def _publish(staging: Path, target: Path) -> None:
    """Atomically move the finished tree into place; if a concurrent run won the race, keep theirs."""
    try:
        os.replace(staging, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def generate(data_dir: Path, n_per_class: int, size: int, seed: int, difficulty: float) -> Path:
    """Write dataset_dir(...)/<class>/<class>_<i:04d>.png for every class, once; return the folder.

    An existing folder is returned untouched. The tree is rendered into a hidden temporary sibling and
    renamed into place, so an interrupted run never leaves a half-written tree that looks complete.
    """
    target = dataset_dir(data_dir, n_per_class, size, seed, difficulty)
    if target.is_dir():
        return target
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
        _write_tree(staging, int(n_per_class), int(size), int(seed), float(difficulty))
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
