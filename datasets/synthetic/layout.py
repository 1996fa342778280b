"""Procedural street layout: a gently curving road lined with facades, parked cars, poles and trees.

Everything is placed in road coordinates ``(s, l)`` (arc length along the centre line, lateral
offset, left positive) and converted to the world frame (z up). The road is 11 m wide (lanes
+-2.75 m, parking at +-4.4 m), sidewalks with a 12 cm curb run from 5.5 m to 8.5 m, facades start
8.5-10.5 m from the centre and leave driveways so there is free space behind the facade line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from datasets.synthetic.primitives import Kind

PATH_STEP = 0.05  # metres between stored centre-line samples

# Material ids select the texture family in :mod:`datasets.synthetic.texture`.
GROUND, FACADE, CAR, POLE, TRUNK, FOLIAGE, CURB, MARKING = range(8)

_FACADE_COLOURS = [(0.72, 0.62, 0.52), (0.62, 0.60, 0.58), (0.78, 0.72, 0.60), (0.55, 0.42, 0.36), (0.80, 0.78, 0.74)]
_CAR_COLOURS = [
    (0.65, 0.1, 0.1),
    (0.15, 0.2, 0.5),
    (0.8, 0.8, 0.82),
    (0.15, 0.15, 0.17),
    (0.35, 0.45, 0.3),
    (0.7, 0.6, 0.2),
]


@dataclass
class Path:
    """Centre line sampled every :data:`PATH_STEP` metres from ``s_min``: positions and heading."""

    s_min: float
    xy: np.ndarray  # (S, 2)
    heading: np.ndarray  # (S,)

    def at(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated centre-line positions (..., 2) and headings (...) at arc lengths ``s``."""
        s = np.asarray(s, dtype=np.float64)
        f = np.clip((s - self.s_min) / PATH_STEP, 0, len(self.heading) - 1.000001)
        i = np.floor(f).astype(np.int64)
        w = f - i
        xy = self.xy[i] * (1 - w)[..., None] + self.xy[i + 1] * w[..., None]
        return xy, self.heading[i] * (1 - w) + self.heading[i + 1] * w

    def to_world(self, s, lateral) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates -> world xy (..., 2) and the local heading (...)."""
        xy, heading = self.at(s)
        normal = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)
        return xy + np.asarray(lateral)[..., None] * normal, heading


def make_path(seed: int, s_min: float, s_max: float) -> Path:
    """Integrate a heading made of two slow sines (curve radius >= ~140 m)."""
    phase = (seed * 0.618034) % 1.0 * 2 * math.pi
    s = np.arange(s_min, s_max + PATH_STEP, PATH_STEP)
    heading = 0.12 * np.sin(2 * np.pi * s / 260.0) + 0.07 * np.sin(2 * np.pi * s / 110.0 + phase)
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=-1) * PATH_STEP
    xy = np.concatenate([np.zeros((1, 2)), np.cumsum(steps[:-1], axis=0)], axis=0)
    return Path(s_min=s_min, xy=xy, heading=heading)


@dataclass
class Layout:
    """Primitive tables in the world frame plus per-primitive colour and material."""

    params: dict[Kind, list] = field(default_factory=lambda: {k: [] for k in Kind})
    colours: dict[Kind, list] = field(default_factory=lambda: {k: [] for k in Kind})
    materials: dict[Kind, list] = field(default_factory=lambda: {k: [] for k in Kind})

    def box(self, path: Path, s, lateral, z0, z1, length, width, colour, material, yaw_offset=0.0):
        (x, y), heading = path.to_world(s, lateral)
        yaw = float(heading) + yaw_offset
        row = [x, y, (z0 + z1) / 2, length / 2, width / 2, (z1 - z0) / 2, math.cos(yaw), math.sin(yaw)]
        self._add(Kind.BOX, row, colour, material)

    def cylinder(self, path: Path, s, lateral, z0, z1, radius, colour, material):
        (x, y), _ = path.to_world(s, lateral)
        self._add(Kind.CYLINDER, [x, y, z0, z1, radius], colour, material)

    def ellipsoid(self, path: Path, s, lateral, z, radii, colour, material):
        (x, y), _ = path.to_world(s, lateral)
        self._add(Kind.ELLIPSOID, [x, y, z, *radii], colour, material)

    def _add(self, kind: Kind, row, colour, material):
        self.params[kind].append([float(v) for v in row])
        self.colours[kind].append([float(c) for c in colour])
        self.materials[kind].append(material)


def _jitter(rng: np.random.Generator, colour, amount: float = 0.06):
    return np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0.05, 0.95)


def _place_buildings(layout: Layout, path: Path, rng, side: int, s_min: float, s_max: float) -> None:
    s = s_min
    while s < s_max:
        length = rng.uniform(7.0, 20.0)
        if rng.random() < 0.3:  # driveway / alley: free space behind the facade line
            s += rng.uniform(3.0, 9.0)
            continue
        setback, depth, height = rng.uniform(8.5, 10.5), rng.uniform(6.0, 12.0), rng.uniform(5.0, 16.0)
        colour = _jitter(rng, _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))])
        layout.box(path, s + length / 2, side * (setback + depth / 2), -0.2, height, length, depth, colour, FACADE)
        s += length + rng.uniform(0.0, 1.5)


def _place_street_furniture(layout: Layout, path: Path, rng, side: int, s_min: float, s_max: float) -> None:
    for s in np.arange(s_min, s_max, 8.0):  # curb + sidewalk slabs, overlapping to stay closed on curves
        layout.box(path, s + 4.0, side * 7.0, -0.2, 0.12, 8.3, 3.0, (0.58, 0.57, 0.55), CURB)
    s = s_min + rng.uniform(0, 5)
    while s < s_max:  # parked cars: body + cabin
        length, width = rng.uniform(3.8, 4.6), rng.uniform(1.65, 1.9)
        lateral, yaw = side * rng.uniform(4.2, 4.6), rng.uniform(-0.05, 0.05)
        colour = _jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 0.04)
        body_top = rng.uniform(0.85, 1.0)
        layout.box(path, s, lateral, 0.2, body_top, length, width, colour, CAR, yaw)
        cabin_top = body_top + rng.uniform(0.45, 0.6)
        layout.box(
            path, s - 0.2, lateral, body_top - 0.05, cabin_top, length * 0.55, width - 0.15, colour * 0.8, CAR, yaw
        )
        s += length + (rng.uniform(1.0, 3.0) if rng.random() < 0.6 else rng.uniform(6.0, 20.0))
    s = s_min + rng.uniform(0, 10)
    while s < s_max:  # poles
        layout.cylinder(path, s, side * 6.0, -0.5, rng.uniform(3.5, 7.0), rng.uniform(0.07, 0.14), (0.35,) * 3, POLE)
        s += rng.uniform(12.0, 25.0)
    s = s_min + rng.uniform(0, 10)
    while s < s_max:  # trees: trunk + crown, and bushes
        lateral, trunk = side * rng.uniform(6.5, 7.5), rng.uniform(2.0, 3.0)
        layout.cylinder(path, s, lateral, -0.5, trunk + 0.5, 0.15, (0.4, 0.3, 0.2), TRUNK)
        radii = (rng.uniform(1.2, 2.2), rng.uniform(1.2, 2.2), rng.uniform(1.5, 2.5))
        green = _jitter(rng, (0.25, 0.45, 0.18))
        layout.ellipsoid(path, s, lateral, trunk + radii[2] * 0.7, radii, green, FOLIAGE)
        if rng.random() < 0.5:
            bush = (rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.8))
            layout.ellipsoid(path, s + rng.uniform(3, 6), side * rng.uniform(7.2, 8.2), 0.2, bush, green * 0.9, FOLIAGE)
        s += rng.uniform(10.0, 20.0)


def make_layout(seed: int, path: Path, s_min: float, s_max: float) -> Layout:
    """Place every primitive of the street between arc lengths ``s_min`` and ``s_max``."""
    rng = np.random.default_rng(seed)
    layout = Layout()
    for side in (1, -1):
        _place_buildings(layout, path, rng, side, s_min, s_max)
        _place_street_furniture(layout, path, rng, side, s_min, s_max)
    for s in np.arange(s_min, s_max, 9.0):  # dashed centre line
        layout.box(path, s + 1.5, 0.0, -0.05, 0.01, 3.0, 0.15, (0.9, 0.9, 0.85), MARKING)
    return layout
