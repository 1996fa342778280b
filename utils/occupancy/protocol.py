"""Assembling the occupancy reference and the predictions of the protocol (REFERENCE 7.1 steps 4-5).

Everything takes query points in the levelled frame, the (4, 4) ``level_to_cam`` of the input camera
and, where needed, the model's predicted z-depth map of the input view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.occupancy.grid import transform

DEPTH_PLUS = 4.0  # the "depth + 4 m" baseline


def project_points(points_level: Tensor, level_to_cam: Tensor, K_norm: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised image coordinates (P, 2) and camera z (P,) of levelled points (P, 3).

    Official: ``uv = (K p)[:2] / (K p)[2]`` without clamping z (all query points are in front).
    """
    p = transform(level_to_cam, points_level.to(torch.float64))
    q = p @ K_norm.to(torch.float64).T
    return (q[:, :2] / q[:, 2:3]).to(points_level.dtype), p[:, 2].to(points_level.dtype)


def depth_at_points(depth: Tensor, uv: Tensor) -> Tensor:
    """Sample a z-depth map (H, W) at normalised coordinates (P, 2): nearest, border, align_corners=True."""
    sampled = F.grid_sample(
        depth[None, None].to(uv.dtype), uv.view(1, 1, -1, 2), mode="nearest", padding_mode="border", align_corners=True
    )
    return sampled.view(-1)


def visible_from_depth(points_level: Tensor, level_to_cam: Tensor, K_norm: Tensor, depth: Tensor) -> Tensor:
    """(P,) bool: the point's camera z is <= the predicted depth at its projection (REFERENCE 7.1 step 4)."""
    uv, z = project_points(points_level, level_to_cam, K_norm)
    return z <= depth_at_points(depth, uv)


def reference_occupancy(occupied_lidar: Tensor, visible_lidar: Tensor, visible_pred: Tensor) -> tuple[Tensor, Tensor]:
    """(occupied, visible) of the reference: visible from the first scan OR the model's depth; occupied &= ~visible.

    The invisible set therefore depends on the evaluated model (official behaviour).
    """
    visible = visible_lidar | visible_pred
    return occupied_lidar & ~visible, visible


def depth_baseline(
    points_level: Tensor, level_to_cam: Tensor, K_norm: Tensor, depth: Tensor, thickness: float | None = None
) -> Tensor:
    """(P,) bool occupancy of a depth map: behind the surface (``thickness=None``) or within ``thickness`` behind it."""
    uv, z = project_points(points_level, level_to_cam, K_norm)
    surface = depth_at_points(depth, uv)
    behind = z > surface
    return behind if thickness is None else behind & (z <= surface + thickness)
