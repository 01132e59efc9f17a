"""The lesion-free chest: torso layers, mediastinum, lungs, ribs and pulmonary vessels.

Everything every class shares. Shapes are drawn in the normalised coordinates of geometry.py. The random
draws happen in a fixed order (body, mediastinum, lungs, ribs, vessels); changing it changes every image.
"""

import math
from dataclasses import dataclass

import numpy as np

from benchmark.data.synthetic.fields import gaussian_splats, sample_pixels
from benchmark.data.synthetic.geometry import Shape, to_px

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


@dataclass(frozen=True)
class Anatomy:
    """A rendered lesion-free slice plus the geometry lesions need."""

    image: np.ndarray
    lungs: tuple[np.ndarray, np.ndarray]  # soft masks, image-left then image-right
    u: np.ndarray
    v: np.ndarray
    px: float  # size of one pixel in normalised units


def _paint(image: np.ndarray, alpha: np.ndarray, value: float | np.ndarray) -> np.ndarray:
    """Alpha-blend a tissue of grey `value` over the image."""
    return image + alpha * (value - image)


def _harmonics(rng: np.random.Generator, amplitude: float) -> tuple[tuple[int, float, float], ...]:
    """Random low-order outline wobble; higher orders get less so outlines stay smooth."""
    return tuple((k, rng.normal(0.0, amplitude) / k, rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4, 5))


def _sample_body(rng: np.random.Generator, jitter: float) -> Shape:
    """The torso outline: a slightly squared, wobbly ellipse, wider than deep and centred a little low."""
    return Shape(
        cx=rng.normal(0.0, 0.02 * jitter),
        cy=0.03 + rng.normal(0.0, 0.02 * jitter),
        ax=float(np.clip(0.84 + rng.normal(0.0, 0.04 * jitter), 0.72, 0.93)),
        ay=float(np.clip(0.60 + rng.normal(0.0, 0.04 * jitter), 0.50, 0.70)),
        angle=rng.normal(0.0, 0.03 * jitter),
        power=rng.uniform(2.1, 2.6),
        harmonics=_harmonics(rng, 0.02 * jitter),
    )


def _body_layers(body: Shape, body_rho: np.ndarray, px: float) -> np.ndarray:
    """Air, skin, subcutaneous fat and muscle: the torso before any organ is drawn."""
    outer = body.soft(body_rho, px)
    below_skin = body.soft(body_rho, px, grow=-SKIN_PX * px * body_rho.shape[0] / 128)
    muscle = body.soft(body_rho, px, grow=-FAT_LAYER)
    image = _paint(np.full_like(body_rho, AIR), outer, SKIN)
    image = _paint(image, below_skin, FAT)
    return _paint(image, muscle, SOFT_TISSUE)


def _sample_mediastinum(rng: np.random.Generator, body: Shape, jitter: float) -> dict[str, Shape]:
    """Heart, descending aorta and vertebra, placed relative to the torso."""
    sy = body.ay / 0.6
    heart_scale = rng.uniform(0.8, 1.15)
    spine_y = body.cy + 0.45 * body.ay + rng.normal(0.0, 0.01 * jitter)
    spine_x = body.cx + rng.normal(0.0, 0.01 * jitter)
    return {
        "heart": Shape(
            body.cx + 0.1 + rng.normal(0, 0.03 * jitter),
            body.cy - 0.12 * sy,
            0.27 * heart_scale,
            0.17 * heart_scale * sy,
            angle=rng.normal(-0.55, 0.1),
            harmonics=_harmonics(rng, 0.03),
        ),
        "aorta": Shape(spine_x + 0.1, spine_y - 0.1 * sy, 0.055, 0.055),
        "vertebra": Shape(spine_x, spine_y, 0.1 * sy, 0.09 * sy, power=2.3),
        "canal": Shape(spine_x, spine_y + 0.15 * sy, 0.045 * sy, 0.04 * sy),
        "arch": Shape(spine_x, spine_y + 0.16 * sy, 0.085 * sy, 0.07 * sy),
        "spinous": Shape(spine_x, spine_y + 0.25 * sy, 0.022, 0.06 * sy),
    }


def _sample_lungs(rng: np.random.Generator, body: Shape, jitter: float) -> tuple[Shape, Shape]:
    """Two lung outlines; the patient's right lung (image left) is usually a little larger."""
    lungs = []
    for side in (-1, 1):
        scale = 1.0 + (0.04 if side < 0 else 0.0) + rng.normal(0.0, 0.05 * jitter)
        lungs.append(
            Shape(
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
    body: Shape,
    inside_wall: np.ndarray,
    lungs: tuple[Shape, Shape],
    organs: dict[str, Shape],
) -> tuple[np.ndarray, np.ndarray]:
    """Lung fields carved out of the chest: they stop at the chest wall, heart, aorta and spine."""
    blocked = np.maximum.reduce(
        [
            organs["heart"].mask(u, v, px, grow=0.04),
            organs["aorta"].mask(u, v, px, grow=0.03),
            organs["vertebra"].mask(u, v, px, grow=0.06),
            organs["arch"].mask(u, v, px, grow=0.06),
            Shape(body.cx, body.cy - 0.1, 0.05, 0.6).mask(u, v, px),  # anterior junction / mediastinum
        ]
    )
    keep = inside_wall * (1.0 - blocked)
    left, right = (lung.mask(u, v, px) * keep for lung in lungs)
    return left, right


def _paint_ribs(
    image: np.ndarray, u: np.ndarray, v: np.ndarray, px: float, body: Shape, rng: np.random.Generator
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
        rib = Shape(cx, cy, rng.uniform(0.045, 0.08), rng.uniform(0.02, 0.028), angle=tangent)
        rib.paint(image, u, v, px, BONE)
    sternum = Shape(body.cx, body.cy - depth * body.ay, rng.uniform(0.06, 0.09), 0.03, rng.normal(0.0, 0.1))
    sternum.paint(image, u, v, px, BONE)


def _paint_mediastinum(
    image: np.ndarray, u: np.ndarray, v: np.ndarray, px: float, organs: dict[str, Shape]
) -> None:
    """Heart and aorta mid-grey; vertebra bright cortex around marrow, canal soft tissue."""
    organs["heart"].paint(image, u, v, px, HEART)
    organs["aorta"].paint(image, u, v, px, HEART)
    organs["arch"].paint(image, u, v, px, BONE)
    organs["spinous"].paint(image, u, v, px, BONE)
    organs["canal"].paint(image, u, v, px, SOFT_TISSUE)
    organs["vertebra"].paint(image, u, v, px, BONE)
    organs["vertebra"].paint(image, u, v, px, MARROW, grow=-2.0 * px)


def _vessels(anatomy: Anatomy, hila: list[tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """Bright dots and short branches, denser and thicker near the hila, confined to the lungs."""
    size = anatomy.u.shape[0]
    lungs = anatomy.lungs[0] + anatomy.lungs[1]
    hilum_dist = np.minimum.reduce([np.hypot(anatomy.u - hu, anatomy.v - hv) for hu, hv in hila])
    rows, cols = sample_pixels(
        lungs * (0.25 + np.exp(-hilum_dist / HILUM_FALLOFF)), int(rng.integers(*VESSEL_SEEDS)), rng
    )
    hu, hv = (np.array([to_px(h[i], size) for h in hila]) for i in (0, 1))
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
    splats = gaussian_splats(
        size, chain_r.ravel(), chain_c.ravel(), (sigma * (1 - 0.12 * steps)).ravel(), amps.ravel()
    )
    return splats * lungs


def render_anatomy(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, difficulty: float) -> Anatomy:
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
    anatomy = Anatomy(image, lungs, u, v, px)
    hila = [(s.cx - side * 0.6 * s.ax, s.cy) for s, side in zip(lung_shapes, (-1, 1), strict=True)]
    return Anatomy(image + _vessels(anatomy, hila, rng), lungs, u, v, px)
