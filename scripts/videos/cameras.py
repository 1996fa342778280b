"""Camera paths of the videos: a trajectory file and the animation from the input view to a top-down view."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scripts.common import Camera, InputError, Transition
from utils.geometry import rotation_x


def load_trajectory(path: str | Path, scale: float = 0.75, stride: int = 2) -> Tensor:
    """Camera poses (N, 4, 4) ``cam_to_world`` in the input camera frame from an ``.npy`` of 4 x 4 poses: every
    ``stride``-th pose, translations times ``scale`` (the official use of ``simple_movement.npy``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"trajectory not found: {path}")
    poses = torch.from_numpy(np.load(path)).float()[::stride].clone()
    if poses.dim() != 3 or poses.shape[1:] != (4, 4):
        raise InputError(f"{path} holds {tuple(poses.shape)}, expected N x 4 x 4 camera poses")
    poses[:, :3, 3] *= scale
    return poses


def crop_width(K_norm: Tensor, width: int, new_width: int) -> Tensor:
    """Normalised intrinsics (3, 3) of a central crop from ``width`` to ``new_width`` pixels (same focal length
    in pixels): the x row scales by ``width / new_width``."""
    K = K_norm.clone()
    K[0] = K_norm[0] * (width / new_width)  # fx, skew and cx
    return K


def transition_cameras(
    spec: Transition,
    K_norm: Tensor,
    size: tuple[int, int],
    z_near: float,
    z_far: float,
    frames: int = 30,
    hold: int = 5,
) -> list[Camera]:
    """``frames`` cameras from the input camera (``K_norm`` (3, 3), ``size`` (H, W), ``z_near``/``z_far``) to the
    top-down view of ``spec``, then ``hold`` more at the top (REFERENCE 9.1).

    Frame ``i`` has progress ``p = (i / (frames - 1))^2`` and pitch ``t = p * pitch_deg`` (down); the camera
    sits at ``y = y_top sin t``, ``z = z_top (1 - cos t)``; near/far go linearly to ``near_top``/``far_top`` and
    the width shrinks linearly to a square (a central crop, same focal length in pixels).
    """
    H, W = size
    cameras = []
    for i in range(frames + hold):
        progress = (min(i, frames - 1) / max(frames - 1, 1)) ** 2
        t = math.radians(spec.pitch_deg) * progress
        cam_to_world = torch.eye(4)
        cam_to_world[:3, :3] = rotation_x(-t).float()  # optical axis (0, sin t, cos t): looking down
        cam_to_world[1, 3] = spec.y_top * math.sin(t)
        cam_to_world[2, 3] = spec.z_top * (1.0 - math.cos(t))
        width = round(W + (H - W) * progress)
        near = z_near + (spec.near_top - z_near) * progress
        far = z_far + (spec.far_top - z_far) * progress
        cameras.append(Camera(cam_to_world, crop_width(K_norm, W, width), (H, width), near, far))
    return cameras
