"""What every protocol needs: encoding the chosen views, full-image depth, chunked density queries."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from datasets.sample import Sample
from models.density_field import EncodedScene
from models.rays import ImageRaySampler, distance_to_z
from models.rendering import RenderViews, render_rays_chunked
from utils.geometry import invert_rigid


def choose_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def relative_poses(batch: Sample) -> Tensor:
    """Poses (B, V, 4, 4) in the frame of view 0 (so "world" = the input camera, as officially)."""
    cam_to_world = batch.cam_to_world.float()
    return invert_rigid(cam_to_world[:, :1]) @ cam_to_world


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


@torch.no_grad()
def render_depth(model: nn.Module, batch: Sample, scene: EncodedScene, head: str, ray_chunk_size: int) -> Tensor:
    """Camera z-depth (B, H, W) of view 0 from every pixel's ray (``ImageRaySampler``, deterministic samples)."""
    B, _, _, H, W = batch.images.shape
    cam_to_world = relative_poses(batch)
    sampler = ImageRaySampler(H, W, model.z_near, model.z_far)
    rays = sampler(batch.K_norm, cam_to_world, view_id=0)  # (B, H W)
    views = RenderViews(  # colours are not needed for depth; view 0 keeps the renderer's contract
        colors=batch.images[:, :1].float() * 0.5 + 0.5,
        K_norm=batch.K_norm[:, :1],
        world_to_cam=invert_rigid(cam_to_world[:, :1]),
    )
    out = render_rays_chunked(
        rays,
        model.field.field_fn(scene, head),
        views,
        ray_chunk_size=ray_chunk_size,
        samples_per_ray=model.samples_per_ray,
        deterministic=True,
    )
    return sampler.to_image(distance_to_z(out.depth, rays.directions_cam))  # (B, H, W)


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
