"""What every protocol needs: encoding the chosen views, image depth, chunked density queries."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from datasets.sample import Sample
from models.density_field import EncodedScene
from models.rays import ImageRaySampler, distance_to_z
from models.rendering import RenderViews, render_rays_chunked
from utils.geometry import invert_pose


def choose_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def relative_poses(batch: Sample) -> Tensor:
    """Poses (B, V, 4, 4) in the frame of view 0 (so "world" = the input camera, as officially)."""
    cam_to_world = batch.cam_to_world.float()
    return invert_pose(cam_to_world[:, :1]) @ cam_to_world


def encode_views(model: nn.Module, batch: Sample, encoder_views: list[int]) -> EncodedScene:
    """Encode the views ``encoder_views`` of a batch, posed relative to view 0."""
    if max(encoder_views) >= batch.num_views:
        raise ValueError(
            f"encoder_views {encoder_views} asks for views the dataset does not return ({batch.num_views})"
        )
    ids = list(encoder_views)
    cam_to_world = relative_poses(batch)
    scene = model.field.encode(batch.images[:, ids], batch.K_norm[:, ids], cam_to_world[:, ids])
    return EncodedScene(features=scene.features.float(), K_norm=scene.K_norm, world_to_cam=scene.world_to_cam)


def pixels_read(read: Callable[[Tensor], Tensor], height: int, width: int) -> Tensor:
    """Flat indices (R,), sorted and unique, of the pixels of an (H, W) map that ``read`` looks at.

    ``read`` is the protocol's own lookup (a nearest ``grid_sample``, a nearest resize plus a mask ...); it is
    applied to a map holding every pixel's own index, so the set is exactly the protocol's, rounding included.
    The indices travel as float32 in such lookups, exact below 2**24 pixels.
    """
    if height * width >= 2**24:
        raise ValueError(f"a {height}x{width} map has too many pixels to index exactly in float32")
    index = torch.arange(height * width, dtype=torch.float64).view(height, width)
    return read(index).long().unique()


@torch.no_grad()
def render_depth(
    model: nn.Module,
    batch: Sample,
    scene: EncodedScene,
    head: str,
    ray_chunk_size: int,
    pixels: Tensor | None = None,
) -> Tensor:
    """Camera z-depth (B, H, W) of view 0 rendered through each pixel (deterministic samples).

    ``pixels`` (R,) flat indices (see :func:`pixels_read`) renders only those rays and leaves NaN elsewhere: each
    ray is rendered on its own, so those pixels equal the full render's while the protocols that read a few
    pixels (the occupancy visibility test, sparse lidar ground truth) skip the rest of the image.
    """
    B, _, _, H, W = batch.images.shape
    if pixels is not None and pixels.numel() == 0:  # nothing is read (a frame without ground truth)
        return batch.images.new_full((B, H, W), float("nan"), dtype=torch.float32)
    cam_to_world = relative_poses(batch)
    sampler = ImageRaySampler(H, W, model.z_near, model.z_far)
    rays = sampler(batch.K_norm, cam_to_world, view_id=0, pixels=pixels)  # (B, H W) or (B, R)
    views = RenderViews(  # colours are not needed for depth; view 0 keeps the renderer's contract
        colors=batch.images[:, :1].float() * 0.5 + 0.5,
        K_norm=batch.K_norm[:, :1],
        world_to_cam=invert_pose(cam_to_world[:, :1]),
    )
    out = render_rays_chunked(
        rays,
        model.field.field_fn(scene, head),
        views,
        ray_chunk_size=ray_chunk_size,
        samples_per_ray=model.samples_per_ray,
    )
    return sampler.to_image(distance_to_z(out.depth, rays.directions_cam), pixels)  # (B, H, W)


@torch.no_grad()
def query_density(
    model: nn.Module, scene: EncodedScene, head: str, points: Tensor, chunk_size: int
) -> tuple[Tensor, Tensor]:
    """Densities (P,) and all-views-invalid flags (P,) of points (P, 3) in the frame of view 0 (one scene)."""
    sigmas, invalids = [], []
    for i in range(0, len(points), chunk_size):
        out = model.field.query(scene, points[None, i : i + chunk_size], density_head=head)
        sigmas.append(out.sigma[0])
        invalids.append(out.invalid[0].all(dim=-1))
    return torch.cat(sigmas), torch.cat(invalids)
