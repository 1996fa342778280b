"""Ray bundles and the samplers that generate them from cameras (REFERENCE 2.4, 2.6).

Conventions kept from the official code (decision 1):

* pixel (row, col) maps to the normalised grid of :func:`utils.geometry.ray_grid`
  (``linspace(-1, 1)``, align_corners=True semantics), while colours are later sampled with
  align_corners=False; the half-pixel inconsistency is the official one.
* origin = camera centre, direction = ``R @ normalize(K^-1 [x, y, 1])`` (unit length), so the
  sample parameter ``t`` along a ray is a **distance**, not camera z; :func:`distance_to_z`
  converts it back.
* ``near`` = 3 m and ``far`` = 80 m.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from utils.geometry import Z_EPS, camera_rays, ray_grid, transform_points

DEFAULT_NEAR = 3.0
DEFAULT_FAR = 80.0


@dataclass
class RayBundle:
    """``R`` rays for each of ``B`` scenes, with the pixel and view each ray came from."""

    origins: Tensor  # (B, R, 3), world frame
    directions: Tensor  # (B, R, 3), world frame, unit length
    directions_cam: Tensor  # (B, R, 3), the same directions in the source camera frame
    pixels: Tensor  # (B, R, 2) long, (row, col) in the source view
    view_ids: Tensor  # (B, R) long, index of the source view in the batch's view dimension
    near: float = DEFAULT_NEAR
    far: float = DEFAULT_FAR

    @property
    def shape(self) -> tuple[int, int]:
        """(B, R)."""
        return self.origins.shape[0], self.origins.shape[1]

    def slice(self, start: int, stop: int) -> RayBundle:
        """Rays ``start:stop`` of every scene (for chunked rendering)."""
        return RayBundle(
            origins=self.origins[:, start:stop],
            directions=self.directions[:, start:stop],
            directions_cam=self.directions_cam[:, start:stop],
            pixels=self.pixels[:, start:stop],
            view_ids=self.view_ids[:, start:stop],
            near=self.near,
            far=self.far,
        )

    def packed(self) -> Tensor:
        """The official packed layout ``[origin, direction, near, far]``, (B, R, 8)."""
        near = torch.full_like(self.origins[..., :1], self.near)
        far = torch.full_like(self.origins[..., :1], self.far)
        return torch.cat([self.origins, self.directions, near, far], dim=-1)


@dataclass
class RaySamples:
    """``S`` samples along each of ``R`` rays of ``B`` scenes: what the renderer hands a density field.

    The field may use the structure: a ray cast from an encoder camera's centre projects to one pixel of that
    camera, so its feature and the positional encoding of its (u, v) are computed once per ray.
    """

    origins: Tensor  # (B, R, 3), world frame
    directions: Tensor  # (B, R, 3), world frame, unit length
    t: Tensor  # (B, R, S), distances along the rays
    points: Tensor  # (B, R, S, 3) = origins + t * directions

    @classmethod
    def along(cls, origins: Tensor, directions: Tensor, t: Tensor) -> RaySamples:
        points = origins[:, :, None] + t[..., None] * directions[:, :, None]  # (B, R, S, 3)
        return cls(origins, directions, t, points)

    def slice(self, start: int, stop: int) -> RaySamples:
        """Rays ``start:stop`` of every scene."""
        return RaySamples(*(x[:, start:stop] for x in (self.origins, self.directions, self.t, self.points)))

    @property
    def num_rays(self) -> int:
        return self.origins.shape[1]


@dataclass
class RaysInCameras:
    """Ray origins and directions (B, R, 3) in the frame of each of V cameras: (B, V, R, 3)."""

    origins: Tensor
    directions: Tensor

    @classmethod
    def of(cls, world_to_cam: Tensor, samples: RaySamples) -> RaysInCameras:
        """The rays of ``samples`` in the cameras ``world_to_cam`` (B, V, 4, 4)."""
        origins = transform_points(world_to_cam, samples.origins.unsqueeze(1))
        directions = samples.directions.unsqueeze(1) @ world_to_cam[..., :3, :3].transpose(-1, -2)
        return cls(origins, directions)

    def from_every_camera(self, nearest: Tensor, tolerance: float = 1e-5) -> bool:
        """Whether every ray starts at the centre of every camera (within ``tolerance`` m) and every sample, the
        nearest at distance ``nearest`` (B, R), lies in front of it: then all samples of a ray project to the
        ray's own pixel of each camera, the one its direction projects to."""
        at_centre = self.origins.abs().amax() <= tolerance
        in_front = (nearest.unsqueeze(1) * self.directions[..., 2] - tolerance > Z_EPS).all()
        return bool(at_centre and in_front)


def rays_from_pixels(
    pixels: Tensor,
    view_ids: Tensor,
    K_norm: Tensor,
    cam_to_world: Tensor,
    height: int,
    width: int,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
) -> RayBundle:
    """Rays through pixels ``(row, col)`` (B, R, 2) of views ``view_ids`` (B, R).

    ``K_norm`` (B, V, 3, 3) and ``cam_to_world`` (B, V, 4, 4) describe the V views of each scene.
    """
    B = pixels.shape[0]
    grid = ray_grid(height, width, device=K_norm.device, dtype=K_norm.dtype)  # (H, W, 2) as (x, y)
    uv = grid[pixels[..., 0], pixels[..., 1]]  # (B, R, 2)
    batch_idx = torch.arange(B, device=pixels.device)[:, None]
    K_ray = K_norm[batch_idx, view_ids]  # (B, R, 3, 3)
    c2w_ray = cam_to_world[batch_idx, view_ids]  # (B, R, 4, 4)
    directions_cam = camera_rays(uv, K_ray, unit=True)  # (B, R, 3)
    directions = (c2w_ray[..., :3, :3] @ directions_cam.unsqueeze(-1)).squeeze(-1)
    return RayBundle(
        origins=c2w_ray[..., :3, 3].contiguous(),
        directions=directions,
        directions_cam=directions_cam,
        pixels=pixels,
        view_ids=view_ids,
        near=near,
        far=far,
    )


def distance_to_z(depth_distance: Tensor, directions_cam: Tensor) -> Tensor:
    """Distance along unit rays (...) -> camera z-depth (...), given camera-frame unit directions (..., 3)."""
    return depth_distance * directions_cam[..., 2]


def _as_id_tensor(ids: Sequence[int] | Tensor, batch_size: int, device: torch.device) -> Tensor:
    """View indices as a (B, L) long tensor; a flat list applies to every scene."""
    ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    return ids.expand(batch_size, -1) if ids.dim() == 1 else ids


@dataclass(frozen=True)
class Patches:
    """Where the ``P`` training patches of each of ``B`` scenes lie (one random choice of a training step)."""

    views: Tensor  # (B, P) long, the view (index in the sample) each patch is cut from
    y0: Tensor  # (B, P) long, top row
    x0: Tensor  # (B, P) long, left column

    def to(self, device: torch.device | str) -> Patches:
        return Patches(self.views.to(device), self.y0.to(device), self.x0.to(device))


@dataclass(frozen=True)
class PatchRaySampler:
    """Random ``patch_size`` x ``patch_size`` pixel patches on the loss frames (REFERENCE 2.6 step 4).

    ``ray_batch_size / patch_size**2`` patches per scene; :meth:`draw` picks for each a loss frame uniformly
    from the given ids and a top-left corner with y in [0, H - p), x in [0, W - p) (the official exclusive
    bounds: the last row and column are never supervised). :meth:`__call__` turns patches into rays ordered
    (patch, row, col), so ``(B, R, ...)`` reshapes to ``(B, P, p, p, ...)``.
    """

    ray_batch_size: int = 2048
    patch_size: int = 8
    near: float = DEFAULT_NEAR
    far: float = DEFAULT_FAR

    @property
    def num_patches(self) -> int:
        return self.ray_batch_size // (self.patch_size**2)

    def draw(
        self,
        batch_size: int,
        height: int,
        width: int,
        loss_ids: Sequence[int] | Tensor,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Patches:
        """Patch positions for ``batch_size`` scenes of ``height`` x ``width`` images (official draw order:
        the loss-frame position, then y0, then x0)."""
        B, P, p = batch_size, self.num_patches, self.patch_size
        ids = _as_id_tensor(loss_ids, B, torch.device(device))  # (B, L)
        # Draw on the generator's device so a seeded CPU generator also works for GPU data.
        rng_device = generator.device if generator is not None else device
        pick = torch.randint(0, ids.shape[1], (B, P), generator=generator, device=rng_device).to(device)
        y0 = torch.randint(0, height - p, (B, P), generator=generator, device=rng_device).to(device)
        x0 = torch.randint(0, width - p, (B, P), generator=generator, device=rng_device).to(device)
        return Patches(views=torch.gather(ids, 1, pick), y0=y0, x0=x0)

    def __call__(
        self, colors: Tensor, K_norm: Tensor, cam_to_world: Tensor, patches: Patches
    ) -> tuple[RayBundle, Tensor]:
        """Rays through ``patches`` of ``colors`` (B, V, 3, H, W) in [0, 1].

        Returns the rays (R = P p^2) and the ground-truth colours of their pixels (B, R, 3).
        """
        B, _, _, H, W = colors.shape
        P, p = patches.views.shape[1], self.patch_size
        device = colors.device
        patches = patches.to(device)
        offsets = torch.arange(p, device=device)
        rows = (patches.y0[:, :, None, None] + offsets[:, None]).expand(B, P, p, p)  # (B, P, p, p)
        cols = (patches.x0[:, :, None, None] + offsets[None, :]).expand(B, P, p, p)
        views = patches.views[:, :, None, None].expand(B, P, p, p)
        batch_idx = torch.arange(B, device=device)[:, None, None, None]
        gt = colors.permute(0, 1, 3, 4, 2)[batch_idx, views, rows, cols]  # (B, P, p, p, 3)

        pixels = torch.stack([rows, cols], dim=-1).reshape(B, P * p * p, 2)
        rays = rays_from_pixels(pixels, views.reshape(B, -1), K_norm, cam_to_world, H, W, self.near, self.far)
        return rays, gt.reshape(B, P * p * p, 3)


@dataclass(frozen=True)
class ImageRaySampler:
    """Every pixel of one view, row-major: R = H W, so ``(B, R, ...)`` reshapes to ``(B, H, W, ...)``.

    ``pixels`` (R,) flat row-major indices restricts the bundle to those pixels (the same rays as in the full
    bundle); :meth:`to_image` then puts them back in place. :func:`models.rendering.render_image` renders a
    camera through it, chunk by chunk.
    """

    height: int
    width: int
    near: float = DEFAULT_NEAR
    far: float = DEFAULT_FAR

    def __call__(
        self, K_norm: Tensor, cam_to_world: Tensor, view_id: int = 0, pixels: Tensor | None = None
    ) -> RayBundle:
        """Rays of view ``view_id`` given ``K_norm`` (B, V, 3, 3) and ``cam_to_world`` (B, V, 4, 4)."""
        B, device = K_norm.shape[0], K_norm.device
        flat = torch.arange(self.height * self.width, device=device) if pixels is None else pixels.to(device)
        rows_cols = torch.stack([flat // self.width, flat % self.width], dim=-1)[None].expand(B, -1, -1)  # (B, R, 2)
        view_ids = torch.full(rows_cols.shape[:2], view_id, dtype=torch.long, device=device)
        return rays_from_pixels(rows_cols, view_ids, K_norm, cam_to_world, self.height, self.width, self.near, self.far)

    def to_image(self, values: Tensor, pixels: Tensor | None = None) -> Tensor:
        """Per-ray values (B, R, ...) -> (B, H, W, ...); with ``pixels``, NaN where no ray was cast."""
        if pixels is not None:
            image = values.new_full((values.shape[0], self.height * self.width, *values.shape[2:]), float("nan"))
            image[:, pixels.to(values.device)] = values
            values = image
        return values.reshape(values.shape[0], self.height, self.width, *values.shape[2:])
