"""The levelled cam0 frame and the query grids of the occupancy protocol (REFERENCE 7.1).

The KITTI-360 perspective cameras look about 5 degrees down. The protocol works in the *levelled*
frame: cam0 of the input frame rotated about its x axis so that the x-z plane is parallel to the road
and y points down (y = 0 at the camera height, y > 0 below it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

# Official constants of the 5-degree inclination (cos, sin of 5 degrees to 7 digits).
INCLINATION_COS = 0.9961947
INCLINATION_SIN = 0.0871557

# The height band of the protocol and of the bird's-eye profile (levelled frame, y down from the camera height).
HEIGHT_BAND = (0.0, 0.75)

# Bird's-eye profile grid (official render_profile).
DensityFn = Callable[[Tensor], tuple[Tensor, Tensor]]  # points (N, 3) -> sigma (N,), invalid (N,)
PROFILE_X_RANGE = (-9.0, 9.0)
PROFILE_Z_RANGE = (21.0, 3.0)
PROFILE_RES = (256, 256, 64)  # x, z, y
PROFILE_SIGMA_SUM = 8.0


def cam_to_level(dtype=torch.float64) -> Tensor:
    """(4, 4) transform from cam0 to the levelled frame: ``p_level = T @ p_cam``.

    A camera pitched down by 5 degrees has its optical axis at ``(0, sin 5, cos 5)`` in the levelled
    frame (y down), which is the third column of this rotation.
    """
    c, s = INCLINATION_COS, INCLINATION_SIN
    T = torch.eye(4, dtype=dtype)
    T[1, 1], T[1, 2], T[2, 1], T[2, 2] = c, s, -s, c
    return T


def level_to_cam(dtype=torch.float64) -> Tensor:
    """(4, 4) inverse of :func:`cam_to_level` (a pure rotation, so the transpose)."""
    return cam_to_level(dtype).transpose(0, 1).contiguous()


def slice_grid(
    x_range: tuple[float, float],
    z_range: tuple[float, float],
    ys: Tensor,
    x_res: int,
    z_res: int,
    dtype=torch.float32,
) -> Tensor:
    """Points (Y, Z, X, 3) of a regular grid: ``x = linspace(x_range)``, ``z = linspace(z_range)``, y from ``ys``."""
    x = torch.linspace(x_range[0], x_range[1], x_res, dtype=dtype)
    z = torch.linspace(z_range[0], z_range[1], z_res, dtype=dtype)
    Y, Z, X = len(ys), z_res, x_res
    return torch.stack(
        [
            x.view(1, 1, X).expand(Y, Z, X),
            ys.to(dtype).view(Y, 1, 1).expand(Y, Z, X),
            z.view(1, Z, 1).expand(Y, Z, X),
        ],
        dim=-1,
    )


@dataclass(frozen=True)
class QueryGrid:
    """Where the occupancy protocol asks: a grid of the levelled frame and the inclination that defines it.

    The defaults are the official KITTI-360 protocol (the "old" ``get_pts`` branch): x from -4 to 4 m in 80
    steps and z from 20 to 4 m in 160 steps (0.1 m spacing), one slice in the middle of the height band
    y 0..0.75 m, 5 degrees of inclination. This class is the only place that grid is written down. Other worlds
    may need another window (the synthetic street is wider than KITTI-360's, and its camera is level); lidar
    reference, prediction and analytic truth always share one grid.
    """

    x_range: tuple[float, float] = (-4.0, 4.0)
    z_range: tuple[float, float] = (20.0, 4.0)
    y_range: tuple[float, float] = HEIGHT_BAND
    x_res: int = 80
    z_res: int = 160
    inclination_deg: float = 5.0

    def cam_to_level(self, dtype=torch.float64) -> Tensor:
        """(4, 4) cam0 -> levelled frame; exactly the official constants at 5 degrees."""
        if self.inclination_deg == 5.0:
            return cam_to_level(dtype)
        c, s = math.cos(math.radians(self.inclination_deg)), math.sin(math.radians(self.inclination_deg))
        T = torch.eye(4, dtype=dtype)
        T[1, 1], T[1, 2], T[2, 1], T[2, 2] = c, s, -s, c
        return T

    def level_to_cam(self, dtype=torch.float64) -> Tensor:
        return self.cam_to_level(dtype).transpose(0, 1).contiguous()

    def points(self, dtype=torch.float32) -> Tensor:
        """The query points (Z * X, 3), x fastest then z: one slice at the middle of ``y_range``."""
        y = torch.tensor([0.5 * self.y_range[0] + 0.5 * self.y_range[1]])
        return slice_grid(self.x_range, self.z_range, y, self.x_res, self.z_res, dtype).reshape(-1, 3)

    def volume(self, y_res: int, dtype=torch.float32) -> Tensor:
        """The grid extended to ``y_res`` slices of ``linspace(y_range)``: (Y * Z * X, 3)."""
        ys = torch.linspace(self.y_range[0], self.y_range[1], y_res)
        return slice_grid(self.x_range, self.z_range, ys, self.x_res, self.z_res, dtype).reshape(-1, 3)

    @property
    def far_dist(self) -> float:
        """Lidar points this far are kept whatever their height: the grid's farthest corner, as officially
        (``||(20, -4)||`` for the official grid)."""
        return math.hypot(max(abs(z) for z in self.z_range), max(abs(x) for x in self.x_range))

    def describe(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def profile_grid(dtype=torch.float32, res: tuple[int, int, int] | None = None) -> Tensor:
    """Bird's-eye profile points in the levelled frame, (Y, Z, X, 3); ``res`` = (X, Z, Y), default
    :data:`PROFILE_RES` (the official 256, 256, 64)."""
    x_res, z_res, y_res = PROFILE_RES if res is None else res
    ys = torch.linspace(HEIGHT_BAND[0], HEIGHT_BAND[1], y_res)
    return slice_grid(PROFILE_X_RANGE, PROFILE_Z_RANGE, ys, x_res, z_res, dtype)


def bird_eye_profile(sigma: Tensor, invalid: Tensor, sigma_sum: float = PROFILE_SIGMA_SUM) -> Tensor:
    """Profile image (Z, X) from densities and invalid flags on a (Y, Z, X) grid (see :func:`profile_grid`).

    As officially: sigma is forced to 1 where invalid, summed cumulatively from the top slice (y = 0)
    down, and the profile is the fraction of slices whose cumulative sum is still <= ``sigma_sum``.
    """
    sigma = torch.where(invalid, torch.ones_like(sigma), sigma)
    return (torch.cumsum(sigma, dim=0) <= sigma_sum).to(sigma.dtype).mean(dim=0)


def render_profile(
    density_fn: DensityFn, level_to_world: Tensor, res: Sequence[int] = PROFILE_RES, block: int = 8
) -> Tensor:
    """Bird's-eye profile (Z, X) in [0, 1] (1 = free, far at the top) of a density callable
    ``points_world (N, 3) -> (sigma (N,), invalid (N,))`` (e.g. :meth:`DensityField.density_fn`) on the official
    grid at ``res`` = (X, Z, Y) (official: 256, 256, 64).

    ``level_to_world`` (4, 4) places the levelled frame in the world. The official threshold (cumulative sigma <= 8
    over 64 height slices) is scaled to ``Y`` slices, so that it stands for the same density integral over the
    0.75 m band.

    The value equals :func:`bird_eye_profile` of every point's density, but a column stops being queried once its
    cumulative sum has passed the threshold (densities are >= 0, so none of its lower slices can count again):
    slices go ``block`` at a time from the top, and only the columns still under the threshold are asked. How much
    that saves depends on the scene: every column over solid ground or an object stops early, free road does not.
    """
    x_res, z_res, y_res = (int(r) for r in res)
    grid = profile_grid(res=(x_res, z_res, y_res))  # (Y, Z, X, 3)
    points = transform(level_to_world, grid.reshape(-1, 3)).reshape(y_res, z_res * x_res, 3)
    sigma_sum = PROFILE_SIGMA_SUM * (y_res - 1) / (PROFILE_RES[2] - 1)
    # As torch.cumsum on a CPU: float64 running sums, each compared after rounding to float32.
    running = torch.zeros(z_res * x_res, dtype=torch.float64)
    free = torch.zeros(z_res * x_res, dtype=torch.int64)  # slices whose cumulative sum is still <= sigma_sum
    active = torch.arange(z_res * x_res)  # columns not yet past the threshold
    for top in range(0, y_res, block):
        rows = points[top : top + block, active]  # (b, A, 3)
        sigma, invalid = density_fn(rows.reshape(-1, 3))
        sigma = torch.where(invalid, torch.ones_like(sigma), sigma).reshape(rows.shape[:2]).cpu()
        column_sum, column_free = running[active], free[active]
        for values in sigma.to(torch.float64):
            column_sum = column_sum + values
            under = column_sum.to(torch.float32) <= sigma_sum
            column_free += under.to(torch.int64)
        running[active], free[active] = column_sum, column_free
        active = active[under]
        if active.numel() == 0:
            break
    return (free.to(torch.float32) / y_res).reshape(z_res, x_res)


def transform(T: Tensor, points: Tensor) -> Tensor:
    """Apply a (4, 4) transform to points (N, 3); computed in float64, returned in the points' dtype."""
    T = T.to(torch.float64)
    return (points.to(torch.float64) @ T[:3, :3].T + T[:3, 3]).to(points.dtype)
