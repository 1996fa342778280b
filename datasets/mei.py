"""The MEI / unified omnidirectional camera model of the KITTI-360 fisheyes.

A camera-frame point ``p`` is projected by

1. ``s = p / |p|`` (unit sphere),
2. ``x = s_x / (s_z + xi)``, ``y = s_y / (s_z + xi)`` (unified model, mirror parameter ``xi``),
3. radial ``(1 + k1 r^2 + k2 r^4)`` and tangential ``(p1, p2)`` distortion with ``r^2 = x^2 + y^2``,
4. ``u = gamma1 x_d + u0``, ``v = gamma2 y_d + v0`` in pixels (pixel centres at integers).

The KITTI-360 calibration files (``image_02.yaml``, ``image_03.yaml``) carry exactly these nine
numbers. The official loaders ignore ``p1, p2`` (REFERENCE 10.3); :meth:`MeiCamera.project`
applies them unless ``tangential=False`` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MeiCamera:
    """Intrinsics of one MEI camera (pixels) and its image size."""

    xi: float
    k1: float
    k2: float
    p1: float
    p2: float
    gamma1: float
    gamma2: float
    u0: float
    v0: float
    width: int
    height: int

    def distort(self, x: Tensor, y: Tensor, tangential: bool = True) -> tuple[Tensor, Tensor]:
        """Apply the lens distortion to undistorted normalised coordinates."""
        r2 = x * x + y * y
        radial = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
        xd, yd = x * radial, y * radial
        if tangential:
            xd = xd + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
            yd = yd + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
        return xd, yd

    def project(self, points_cam: Tensor, tangential: bool = True) -> tuple[Tensor, Tensor]:
        """Camera-frame points (..., 3) -> pixel coordinates (..., 2) and ``valid`` (...).

        ``valid`` is False where the unified model is undefined (``s_z + xi <= 0``) or the pixel
        falls outside the image (centres at 0 .. W-1, with half a pixel of margin).
        """
        s = points_cam / points_cam.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        denom = s[..., 2] + self.xi
        # With xi > 1 the model sees beyond 90 degrees, but only for s_z > -1/xi: beyond that the
        # projection folds back (a point straight behind would land on the principal point).
        ok = (s[..., 2] > -1.0 / self.xi) if self.xi > 1.0 else (denom > 1e-6)
        denom = torch.where(ok, denom, torch.ones_like(denom))
        xd, yd = self.distort(s[..., 0] / denom, s[..., 1] / denom, tangential)
        u = self.gamma1 * xd + self.u0
        v = self.gamma2 * yd + self.v0
        inside = (u >= -0.5) & (u <= self.width - 0.5) & (v >= -0.5) & (v <= self.height - 0.5)
        return torch.stack([u, v], dim=-1), ok & inside

    def undistort(self, xd: Tensor, yd: Tensor, tangential: bool = True, iterations: int = 50):
        """Invert :meth:`distort` by fixed-point iteration (converges for KITTI-360 lenses)."""
        x, y = xd.clone(), yd.clone()
        for _ in range(iterations):
            r2 = x * x + y * y
            radial = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
            dx = torch.zeros_like(x)
            dy = torch.zeros_like(y)
            if tangential:
                dx = 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
                dy = self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
            x = (xd - dx) / radial
            y = (yd - dy) / radial
        return x, y

    def unproject(self, pixels: Tensor, tangential: bool = True) -> tuple[Tensor, Tensor]:
        """Pixel coordinates (..., 2) -> unit camera-frame rays (..., 3) and ``valid`` (...).

        Pixels beyond the model's domain (outside the lens circle, where the unified model has
        no pre-image, or where undistortion does not converge) are invalid; their ray is zero.
        """
        xd = (pixels[..., 0] - self.u0) / self.gamma1
        yd = (pixels[..., 1] - self.v0) / self.gamma2
        x, y = self.undistort(xd, yd, tangential)
        r2 = x * x + y * y
        discriminant = 1.0 + (1.0 - self.xi * self.xi) * r2
        rx, ry = self.distort(x, y, tangential)
        converged = ((rx - xd).abs() < 1e-9) & ((ry - yd).abs() < 1e-9)
        valid = (discriminant >= 0) & converged & torch.isfinite(r2)
        # Point on the unit sphere whose unified projection is (x, y).
        factor = (self.xi + torch.sqrt(discriminant.clamp_min(0.0))) / (r2 + 1.0)
        rays = torch.stack([factor * x, factor * y, factor - self.xi], dim=-1)
        rays = rays / rays.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rays = torch.where(valid.unsqueeze(-1), rays, torch.zeros_like(rays))
        return rays, valid

    def pixel_grid(self, dtype=torch.float64) -> Tensor:
        """Pixel-centre coordinates of the whole image, (H, W, 2) as (u, v)."""
        vs = torch.arange(self.height, dtype=dtype)
        us = torch.arange(self.width, dtype=dtype)
        grid_v, grid_u = torch.meshgrid(vs, us, indexing="ij")
        return torch.stack([grid_u, grid_v], dim=-1)
