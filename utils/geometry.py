"""Pinhole camera geometry and rigid transforms.

Conventions (REFERENCE 2.2, 2.4; decision 1 keeps them exactly):

* Camera frame: OpenCV, x right, y down, z forward.
* ``K_norm``: intrinsics normalised to [-1, 1] image coordinates,
  ``fx' = 2 fx / W``, ``fy' = 2 fy / H``, ``cx' = 2 cx / W - 1``, ``cy' = 2 cy / H - 1``,
  where (fx, fy, cx, cy) are in pixels with pixel centres at integer coordinates.
* The ray grid is ``linspace(-1, 1, W)`` x ``linspace(-1, 1, H)`` (``align_corners=True``
  semantics), while features and colours are sampled with ``align_corners=False``. The official
  checkpoints were trained with this half-pixel inconsistency, so it is kept and named here.
* Poses are 4 x 4 rigid transforms named by direction: ``cam_to_world`` maps camera
  coordinates to world coordinates, ``world_to_cam`` is its inverse.

All functions are pure, batched over leading dimensions and work for float32 and float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Points closer than this to the camera plane are clamped (official value).
Z_EPS = 1e-3


def normalize_intrinsics(K: Tensor, width: int, height: int) -> Tensor:
    """Pixel intrinsics (..., 3, 3) -> intrinsics normalised to [-1, 1] (..., 3, 3)."""
    K_norm = K.clone()
    K_norm[..., 0, 0] = 2.0 * K[..., 0, 0] / width
    K_norm[..., 1, 1] = 2.0 * K[..., 1, 1] / height
    K_norm[..., 0, 2] = 2.0 * K[..., 0, 2] / width - 1.0
    K_norm[..., 1, 2] = 2.0 * K[..., 1, 2] / height - 1.0
    K_norm[..., 0, 1] = 2.0 * K[..., 0, 1] / width
    return K_norm


def denormalize_intrinsics(K_norm: Tensor, width: int, height: int) -> Tensor:
    """Inverse of :func:`normalize_intrinsics`: (..., 3, 3) normalised -> pixels."""
    K = K_norm.clone()
    K[..., 0, 0] = K_norm[..., 0, 0] * width / 2.0
    K[..., 1, 1] = K_norm[..., 1, 1] * height / 2.0
    K[..., 0, 2] = (K_norm[..., 0, 2] + 1.0) * width / 2.0
    K[..., 1, 2] = (K_norm[..., 1, 2] + 1.0) * height / 2.0
    K[..., 0, 1] = K_norm[..., 0, 1] * width / 2.0
    return K


def ray_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Normalised pixel coordinates of the official ray grid, (H, W, 2) as (x, y).

    ``x = linspace(-1, 1, W)``: pixel column ``j`` maps to ``-1 + 2 j / (W - 1)``.
    """
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def project(points_cam: Tensor, K_norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Project camera-frame points (..., 3) with ``K_norm`` (..., 3, 3) (broadcast).

    Returns ``uv`` (..., 2) in normalised coordinates, the camera ``z`` (...), and
    ``invalid`` (...): ``z <= 1e-3`` or ``|u| > 1`` or ``|v| > 1`` (official validity rule).
    """
    q = torch.einsum("...ij,...j->...i", K_norm, points_cam)  # (..., 3); one product per point, not a batch of 3x3s
    z = q[..., 2]
    uv = q[..., :2] / z.clamp_min(Z_EPS).unsqueeze(-1)
    invalid = (z <= Z_EPS) | (uv[..., 0].abs() > 1.0) | (uv[..., 1].abs() > 1.0)
    return uv, points_cam[..., 2], invalid


def unproject(uv: Tensor, z: Tensor, K_norm: Tensor) -> Tensor:
    """Normalised pixel coordinates (..., 2) at camera depth ``z`` (...) -> points (..., 3)."""
    return camera_rays(uv, K_norm, unit=False) * z.unsqueeze(-1)


def camera_rays(uv: Tensor, K_norm: Tensor, unit: bool = True) -> Tensor:
    """Camera-frame ray directions (..., 3) through normalised pixels ``uv`` (..., 2).

    With ``unit=False`` the direction has z = 1 (so ``t`` along it is camera depth);
    with ``unit=True`` it has length 1 (so ``t`` is distance, as the official renderer uses).
    """
    fx, fy = K_norm[..., 0, 0], K_norm[..., 1, 1]
    cx, cy = K_norm[..., 0, 2], K_norm[..., 1, 2]
    skew = K_norm[..., 0, 1]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    dirs = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    return dirs / dirs.norm(dim=-1, keepdim=True) if unit else dirs


def invert_rigid(T: Tensor) -> Tensor:
    """Inverse of rigid transforms (..., 4, 4) without a general matrix inverse."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    inv = torch.zeros_like(T)
    inv[..., :3, :3] = R.transpose(-1, -2)
    inv[..., :3, 3:] = -R.transpose(-1, -2) @ t
    inv[..., 3, 3] = 1.0
    return inv


def invert_pose(T: Tensor) -> Tensor:
    """Inverse of poses (..., 4, 4) by a general matrix inverse, as the official model code does it.

    Mathematically the same as :func:`invert_rigid`, but float32 rounds differently (~1e-7), and the positional
    encoding's highest frequency amplifies that to ~1e-4 in the density. The model's pose re-basing and its
    world-to-camera matrices use this one so that training and inference reproduce the official numbers.
    """
    return torch.linalg.inv(T)


def transform_points(T: Tensor, points: Tensor) -> Tensor:
    """Apply rigid/affine transforms (..., 4, 4) to points (..., N, 3) -> (..., N, 3)."""
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def make_rigid(R: Tensor, t: Tensor) -> Tensor:
    """Assemble (..., 4, 4) from rotation (..., 3, 3) and translation (..., 3)."""
    T = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def rotation_x(angle: float, dtype=torch.float64) -> Tensor:
    """Rotation about the x axis by ``angle`` radians (3, 3)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=dtype)


def rotation_y(angle: float, dtype=torch.float64) -> Tensor:
    """Rotation about the y axis by ``angle`` radians (3, 3)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=dtype)


def rotation_z(angle: float, dtype=torch.float64) -> Tensor:
    """Rotation about the z axis by ``angle`` radians (3, 3)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def fisheye_virtual_rotation(yaw_deg: float, pitch_deg: float, dtype=torch.float64) -> Tensor:
    """Rotation of the virtual pinhole inside a KITTI-360 fisheye camera frame (3, 3).

    Official convention (REFERENCE 6.1): extrinsic Euler "xy" with angles (pitch, yaw), i.e.
    ``R = R_y(yaw) @ R_x(pitch)`` (scipy's lowercase "xy"). A ray ``d`` of the virtual pinhole
    maps to ``R @ d`` in the fisheye frame; a negative pitch tilts the view down (y points
    down). The right fisheye uses ``-yaw``.
    """
    return rotation_y(math.radians(yaw_deg), dtype) @ rotation_x(math.radians(pitch_deg), dtype)
