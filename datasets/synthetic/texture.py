"""View-consistent procedural colour: a pure function of the world-space surface point.

Colour = base colour of the primitive x (1 + multi-scale pattern) x Lambert shading from a fixed
sun. The pattern is a sum of plane waves with wavelengths 0.25-2.5 m (higher frequencies have
smaller amplitudes, so distant surfaces alias little at 640 px width); each primitive shifts the
phases so neighbouring objects do not share texture. Six waves of random direction per scale
give isotropic blotches: with two (generator 1.0) most surfaces showed parallel stripes, along
which a photometric match is ambiguous, and training on that world did not beat the "empty"
baseline in the demo's budget (README, "Training study"). There are no view-dependent terms, so the
same surface point has the same colour in every frame, which is what photometric losses assume.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from datasets.synthetic.layout import FACADE, GROUND

_WAVELENGTHS = (2.5, 1.4, 0.8, 0.45, 0.25)
_AMPLITUDES = (0.32, 0.24, 0.18, 0.13, 0.09)  # of a two-wave scale; more waves share the same power
_WAVES_PER_SCALE = 6


def _wave_table() -> tuple[Tensor, Tensor]:
    """Fixed wave vectors (K, 3) in rad/m and amplitudes (K,) (independent of the world seed)."""
    rng = np.random.default_rng(12345)
    vectors, amplitudes = [], []
    for wavelength, amplitude in zip(_WAVELENGTHS, _AMPLITUDES, strict=True):
        for _ in range(_WAVES_PER_SCALE):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            vectors.append(direction * 2 * math.pi / wavelength)
            amplitudes.append(amplitude * math.sqrt(2 / _WAVES_PER_SCALE))
    return torch.tensor(np.array(vectors), dtype=torch.float32), torch.tensor(amplitudes, dtype=torch.float32)


_WAVES, _AMPS = _wave_table()
_PHASE_STEPS = torch.arange(1, len(_AMPS) + 1, dtype=torch.float32)
_SUN = torch.tensor([0.4, 0.3, 0.85]) / math.sqrt(0.4**2 + 0.3**2 + 0.85**2)
_SKY_HORIZON = torch.tensor([0.86, 0.90, 0.95])
_SKY_ZENITH = torch.tensor([0.42, 0.60, 0.90])


def pattern(points: Tensor, phases: Tensor) -> Tensor:
    """Multi-scale value in about [-1, 1] at world points (N, 3) with per-point phase offsets (N,)."""
    # (K, 3) @ (3, N) is several times faster than (N, 3) @ (3, K) on CPU.
    angles = torch.addmm(_PHASE_STEPS[:, None] * phases, _WAVES, points.T.contiguous())  # (K, N)
    return _AMPS @ torch.sin_(angles)


def facade_windows(points: Tensor) -> Tensor:
    """A darkening factor in [0.55, 1] that draws a window grid on vertical surfaces above 1 m."""
    horizontal = points[:, 0] + points[:, 1]
    u = torch.sin(horizontal * (2 * math.pi / 3.0))
    v = torch.sin(points[:, 2] * (2 * math.pi / 3.2) - 0.8)
    window = (u > 0.35) & (v > 0.3) & (points[:, 2] > 1.5)
    return torch.where(window, torch.full_like(u, 0.55), torch.ones_like(u))


def surface_colour(points: Tensor, normals: Tensor, base: Tensor, material: Tensor, phases: Tensor) -> Tensor:
    """Lambertian colour (N, 3) in [0, 1] of surface points (N, 3) with normals (N, 3).

    ``base`` (N, 3), ``material`` (N,) and ``phases`` (N,) are the per-point rows of the hit primitive.
    """
    brightness = 1.0 + 0.45 * pattern(points, phases)
    is_facade = (material == FACADE) & (normals[:, 2].abs() < 0.5)
    brightness = torch.where(is_facade, brightness * facade_windows(points), brightness)
    # Fine asphalt grain on the ground helps matching right in front of the car.
    fine = torch.sin(points[:, 0] * 23.0 + torch.sin(points[:, 1] * 17.0) * 2.0) * 0.03
    brightness = torch.where(material == GROUND, brightness + fine, brightness)
    shade = 0.62 + 0.38 * (normals @ _SUN).clamp_min(0.0)
    return (base * (brightness * shade)[:, None]).clamp(0.0, 1.0)


def sky_colour(dirs: Tensor) -> Tensor:
    """Colour (N, 3) of rays (N, 3) (world frame) that hit nothing: a function of elevation only."""
    w = (dirs[:, 2] * 2.5).clamp(0.0, 1.0)[:, None]
    return _SKY_HORIZON * (1 - w) + _SKY_ZENITH * w
