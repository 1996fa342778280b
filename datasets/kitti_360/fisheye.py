"""Fisheye -> virtual pinhole resampling (REFERENCE 6.2).

The virtual pinhole has the perspective intrinsics ``K_norm`` and is rotated inside the fisheye
by ``rotation`` (virtual -> fisheye). The sampling grid depends only on the camera, so it is
computed once and reused for every frame.

Two models:

* ``"official"``: exactly the official ``FisheyeToPinholeSampler``. It ignores the tangential
  terms p1, p2, and normalises pixels with ``2 u / W - 1`` while sampling with
  ``align_corners=True``, so it reads the fisheye at ``u (W - 1) / W`` instead of ``u`` (up to
  ~1-2 px off in the 640 px view, REFERENCE 10.3). The official checkpoints were trained on it.
* ``"exact"``: the full MEI model (:class:`datasets.mei.MeiCamera`, with p1, p2) and pixel
  centre ``u`` mapped to ``2 u / (W - 1) - 1``, so ``align_corners=True`` samples exactly there.

Both read one bilinear sample per target pixel, which aliases once a target pixel covers several fisheye
pixels (neighbouring pixels of the official 192 x 640 view lie 1.2 fisheye pixels apart in the median, 1.7 at
most; those of a 64 x 192 view 3.9 and 5.6). ``supersample=s`` (the ``antialias`` option of the loader) reads an
``s x s`` block of samples spread over each target pixel's footprint and averages them (:func:`antialias_factor`
picks ``s``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.mei import MeiCamera
from utils.geometry import ray_grid

FisheyeModel = Literal["official", "exact"]


def virtual_rays(K_norm: Tensor, image_size: tuple[int, int], rotation: Tensor, supersample: int = 1) -> Tensor:
    """Unit rays of the virtual pinhole's pixels, in the fisheye camera frame, (H s, W s, 3) float64.

    Target pixels are the official ``linspace(-1, 1)`` grid; ``ray = rotation @ K^-1 (x, y, 1)``. With
    ``supersample = s > 1`` each pixel gets an ``s x s`` block of rays at the centres of the ``s x s`` cells of its
    footprint (one pixel spacing wide, centred on the pixel), so averaging a block is centred on the pixel.
    """
    H, W = image_size
    xy = ray_grid(H, W, dtype=torch.float64)  # (H, W, 2)
    if supersample > 1:
        s = supersample
        cells = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5  # (s,) in pixel spacings
        xs = (xy[0, :, 0, None] + cells * (2.0 / (W - 1))).reshape(-1)  # (W s,)
        ys = (xy[:, 0, 1, None] + cells * (2.0 / (H - 1))).reshape(-1)  # (H s,)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        xy = torch.stack([grid_x, grid_y], dim=-1)
    pixels = torch.cat([xy, torch.ones(*xy.shape[:2], 1, dtype=torch.float64)], dim=-1)  # (H s, W s, 3)
    rays = pixels @ torch.linalg.inv(K_norm.to(torch.float64)).T @ rotation.to(torch.float64).T
    return rays / rays.norm(dim=-1, keepdim=True)


def fisheye_sampling_grid(
    K_norm: Tensor,
    image_size: tuple[int, int],
    camera: MeiCamera,
    rotation: Tensor,
    model: FisheyeModel = "official",
    supersample: int = 1,
) -> Tensor:
    """``grid_sample`` coordinates (1, H s, W s, 2) float32 into the full fisheye image (``s = supersample``)."""
    rays = virtual_rays(K_norm, image_size, rotation, supersample)  # (H s, W s, 3)
    if model == "official":
        x, y, z = rays.unbind(-1)
        x, y = x / (z + camera.xi), y / (z + camera.xi)
        r = x * x + y * y
        factor = 1.0 + camera.k1 * r + camera.k2 * r * r
        # gamma, u0, v0 pre-normalised by the image size, as officially (the u (W-1)/W quirk).
        gx = x * factor * (2.0 * camera.gamma1 / camera.width) + (2.0 * camera.u0 / camera.width - 1.0)
        gy = y * factor * (2.0 * camera.gamma2 / camera.height) + (2.0 * camera.v0 / camera.height - 1.0)
        grid = torch.stack([gx, gy], dim=-1)
    elif model == "exact":
        pixels, _ = camera.project(rays, tangential=True)  # (H, W, 2), centres at integers
        grid = torch.stack(
            [2.0 * pixels[..., 0] / (camera.width - 1) - 1.0, 2.0 * pixels[..., 1] / (camera.height - 1) - 1.0],
            dim=-1,
        )
    else:
        raise ValueError(f"fisheye_model must be 'official' or 'exact', got {model!r}")
    return grid.unsqueeze(0).to(torch.float32)


def antialias_factor(grid: Tensor, camera: MeiCamera, limit: int = 8) -> int:
    """The supersampling that keeps a one-sample-per-pixel ``grid`` (1, H, W, 2) from skipping pixels of the
    fisheye ``camera``: the largest spacing between neighbouring samples, in fisheye pixels, rounded up (at most
    ``limit``). ``align_corners=True`` coordinates are ``2 u / (w - 1) - 1``, hence the ``(w - 1) / 2``."""
    g = grid[0].to(torch.float64)
    scale = torch.tensor([(camera.width - 1) / 2.0, (camera.height - 1) / 2.0], dtype=torch.float64)
    down = ((g[1:] - g[:-1]) * scale).norm(dim=-1)
    across = ((g[:, 1:] - g[:, :-1]) * scale).norm(dim=-1)
    pixels = max(down.max().item(), across.max().item())
    return int(min(limit, max(1, math.ceil(pixels - 1e-6))))


def resample_fisheye(colors: Tensor, grid: Tensor, supersample: int = 1) -> Tensor:
    """Resample fisheye colours (3, h, w) with a grid from :func:`fisheye_sampling_grid` -> (3, H, W).

    Bilinear, ``align_corners=True``, zeros outside the image (official settings); a supersampled grid's
    ``s x s`` blocks are averaged.
    """
    out = F.grid_sample(colors.unsqueeze(0).to(grid.dtype), grid, mode="bilinear", align_corners=True)
    if supersample > 1:
        out = F.avg_pool2d(out, supersample)
    return out.squeeze(0)


def resample_fisheye_rgb(image: np.ndarray, grid: Tensor, supersample: int = 1) -> np.ndarray:
    """uint8 RGB (h, w, 3) -> resampled uint8 RGB (H, W, 3), as the preprocessing cache stores it."""
    colors = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    out = resample_fisheye(colors, grid, supersample).permute(1, 2, 0)
    return (out * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
