"""Images for humans: colour-mapped depth and image grids (CHW float tensors in [0, 1])."""

from __future__ import annotations

import matplotlib
import torch
from torch import Tensor


def colorize(values: Tensor, vmin: float, vmax: float, cmap: str = "magma") -> Tensor:
    """Scalar map (H, W) -> RGB image (3, H, W) in [0, 1] through a matplotlib colormap."""
    normalized = ((values.detach().float().cpu() - vmin) / (vmax - vmin)).clamp(0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](normalized.numpy())  # (H, W, 4)
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def colorize_depth(depth: Tensor, near: float, far: float) -> Tensor:
    """Depth (H, W) -> magma image (3, H, W), bright = near: inverse depth normalised to [1/far, 1/near]."""
    inv = 1.0 / depth.clamp(near, far)
    return colorize(inv, 1.0 / far, 1.0 / near)
