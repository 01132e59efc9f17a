"""Normalised image coordinates and the soft-edged shapes drawn in them.

u runs left to right and v anterior (top) to posterior (bottom), both in [-1, 1]; the patient's left is
on the image right, as radiologists read CT. Shapes are anti-aliased so outlines look the same at every
image size.
"""

import cmath
import math
from dataclasses import dataclass

import numpy as np

from benchmark.data.synthetic.fields import sigmoid

EDGE_PX = 0.6  # anti-aliasing width of organ boundaries, in pixels
MASK_TAIL = 14  # masks are evaluated out to this many edge widths beyond the outline (sigmoid < 1e-6)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The (u, v) coordinates of every pixel centre, each a (size, size) float32 array."""
    axis = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    return u, v


def to_px(coord: float, size: int) -> float:
    """Normalised coordinate -> pixel index (inverse of grid)."""
    return (coord + 1.0) * size / 2.0 - 0.5


@dataclass(frozen=True)
class Shape:
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
        return sigmoid((1.0 - rho * scale / (scale + grow)) * (scale + grow) / (EDGE_PX * px))

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
