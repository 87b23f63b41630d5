"""Procedural renderer for MiniCanvas images.

An image is 32 x 32 RGB: one object on a dark, mildly noisy background. The object's
shape, color and texture come from the vocabulary. Its position, size and rotation
are drawn from a seeded generator, so `render(labels, seed)` is a pure function.
Shapes are drawn at twice the resolution and averaged down, which smooths edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mimmu.minicanvas.vocabulary import COLORS, OBJECTS, TEXTURES

IMAGE_SIZE = 32
SUPERSAMPLING = 2

# Position, size and rotation bounds that keep every object recognisable. Rotation
# stays under 45 degrees / 2 so that a square never turns into a diamond.
RADIUS_RANGE_PX = (10.0, 13.0)
CENTER_JITTER_PX = 2.5
ROTATION_RANGE_RAD = (-math.radians(18), math.radians(18))
BACKGROUND_LEVEL = 0.07
BACKGROUND_NOISE_STD = 0.02
SHADE = 0.3  # brightness of the dark parts of a texture, relative to the color

COLOR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.12, 0.10),
    "orange": (1.0, 0.55, 0.0),
    "yellow": (1.0, 0.95, 0.10),
    "green": (0.10, 0.85, 0.20),
    "cyan": (0.10, 0.90, 0.95),
    "blue": (0.15, 0.30, 1.0),
    "purple": (0.68, 0.20, 0.95),
    "white": (0.95, 0.95, 0.95),
}


@dataclass(frozen=True)
class Labels:
    """The three attributes of one MiniCanvas image."""

    object: str
    color: str
    texture: str

    def __post_init__(self) -> None:
        for value, allowed, name in (
            (self.object, OBJECTS, "object"),
            (self.color, COLORS, "color"),
            (self.texture, TEXTURES, "texture"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")

    def indices(self) -> tuple[int, int, int]:
        """Return the class indices (object, color, texture) used by the evaluator."""
        return OBJECTS.index(self.object), COLORS.index(self.color), TEXTURES.index(self.texture)


def _regular_polygon(sides: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(sides) / sides
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star_polygon(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


# Outlines in the object's own frame: x to the right, y downwards, radius about 1.
_POLYGONS: dict[str, np.ndarray] = {
    "triangle": _regular_polygon(3) * np.array([1.1, 1.1]) + np.array([0.0, 0.2]),
    "star": _star_polygon(),
    "hexagon": _regular_polygon(6, phase=0.0),
    "arrow": np.array(
        [[-1.0, -0.28], [0.15, -0.28], [0.15, -0.7], [1.0, 0.0], [0.15, 0.7], [0.15, 0.28], [-1.0, 0.28]]
    ),
    "lightning bolt": np.array(
        [[0.15, -1.0], [-0.55, 0.12], [-0.05, 0.12], [-0.25, 1.0], [0.6, -0.2], [0.08, -0.2], [0.45, -1.0]]
    )
    * 1.2,
}


def _inside_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test for arrays of points."""
    inside = np.zeros(x.shape, dtype=bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        crosses = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (x < x_cross)
    return inside


def shape_mask(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return a boolean mask of the shape `name` at object-frame coordinates (x, y)."""
    r2 = x * x + y * y
    if name == "circle":
        return r2 <= 1.0
    if name == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if name == "crescent":
        return (r2 <= 1.0) & ((x - 0.45) ** 2 + (y + 0.1) ** 2 > 0.8**2)
    if name == "square":
        return (np.abs(x) <= 0.78) & (np.abs(y) <= 0.78)
    if name == "diamond":
        return np.abs(x) / 0.75 + np.abs(y) / 1.0 <= 1.0
    if name == "cross":
        return ((np.abs(x) <= 0.3) & (np.abs(y) <= 0.95)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 0.95))
    if name == "heart":
        # (u^2 + v^2 - 1)^3 - u^2 v^3 <= 0 is the classic heart curve, v pointing up.
        u, v = x * 1.15, -y * 1.15 + 0.15
        return (u * u + v * v - 1.0) ** 3 - u * u * v**3 <= 0.0
    if name in _POLYGONS:
        return _inside_polygon(x, y, _POLYGONS[name])
    raise ValueError(f"unknown object {name!r}; expected one of {', '.join(OBJECTS)}")


def _texture_intensity(
    texture: str, mask: np.ndarray, px: np.ndarray, py: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Brightness in [SHADE, 1] of each pixel of the object; px, py in output pixels."""
    if texture == "solid":
        return np.ones_like(px)
    if texture == "striped":
        return np.where(np.floor(py / 3.0) % 2 == 0, 1.0, SHADE)
    if texture == "dotted":
        dx = (px % 5.0) - 2.5
        dy = (py % 5.0) - 2.5
        return np.where(dx * dx + dy * dy <= 1.6**2, 1.0, SHADE)
    if texture == "checkered":
        return np.where((np.floor(px / 4.0) + np.floor(py / 4.0)) % 2 == 0, 1.0, SHADE)
    if texture == "gradient":
        columns = px[mask] if mask.any() else px.ravel()
        left, right = columns.min(), columns.max()
        return SHADE + (1.0 - SHADE) * np.clip((px - left) / max(right - left, 1e-6), 0.0, 1.0)
    if texture == "outlined":
        eroded = mask.copy()
        for shift in range(1, 2 * SUPERSAMPLING + 1):
            eroded[shift:, :] &= mask[:-shift, :]
            eroded[:-shift, :] &= mask[shift:, :]
            eroded[:, shift:] &= mask[:, :-shift]
            eroded[:, :-shift] &= mask[:, shift:]
        return np.where(eroded, SHADE, 1.0)
    if texture == "zigzag":
        wave = np.abs((px % 6.0) - 3.0)  # triangle wave of period 6 px, amplitude 3 px
        return np.where(np.floor((py + wave) / 3.0) % 2 == 0, 1.0, SHADE)
    if texture == "speckled":
        cells = rng.random((IMAGE_SIZE, IMAGE_SIZE)) < 0.5
        lit = cells[np.clip(py.astype(int), 0, IMAGE_SIZE - 1), np.clip(px.astype(int), 0, IMAGE_SIZE - 1)]
        return np.where(lit, 1.0, SHADE)
    raise ValueError(f"unknown texture {texture!r}; expected one of {', '.join(TEXTURES)}")


def render(labels: Labels, seed: int) -> np.ndarray:
    """Render one image; returns float32 RGB of shape (32, 32, 3) in [0, 1].

    The same labels and seed give the same pixels on every platform numpy supports.
    """
    rng = np.random.default_rng([seed, *labels.indices()])
    radius = rng.uniform(*RADIUS_RANGE_PX)
    center = IMAGE_SIZE / 2 + rng.uniform(-CENTER_JITTER_PX, CENTER_JITTER_PX, size=2)
    angle = rng.uniform(*ROTATION_RANGE_RAD)

    n = IMAGE_SIZE * SUPERSAMPLING
    grid = (np.arange(n) + 0.5) / SUPERSAMPLING  # pixel centres, in output pixels
    py, px = np.meshgrid(grid, grid, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = (px - center[0]) / radius, (py - center[1]) / radius
    mask = shape_mask(labels.object, cos * dx + sin * dy, -sin * dx + cos * dy)

    intensity = _texture_intensity(labels.texture, mask, px, py, rng)
    color = np.asarray(COLOR_RGB[labels.color])
    foreground = intensity[..., None] * color  # (n, n, 3)
    background = BACKGROUND_LEVEL + rng.normal(0.0, BACKGROUND_NOISE_STD, size=(n, n, 1))
    image = np.where(mask[..., None], foreground, background)

    # Average SUPERSAMPLING x SUPERSAMPLING blocks: (n, n, 3) -> (32, 32, 3).
    image = image.reshape(IMAGE_SIZE, SUPERSAMPLING, IMAGE_SIZE, SUPERSAMPLING, 3).mean(axis=(1, 3))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def render_batch(labels: list[Labels], seeds: list[int]) -> np.ndarray:
    """Render many images; returns float32 of shape (N, 32, 32, 3) in [0, 1]."""
    if len(labels) != len(seeds):
        raise ValueError(f"got {len(labels)} labels but {len(seeds)} seeds; pass one seed per image")
    return (
        np.stack([render(item, seed) for item, seed in zip(labels, seeds, strict=True)])
        if labels
        else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    )
