"""Fast tiled ray casting for cameras and lidar (all rays of a sensor share one origin).

A sensor's rays are fixed in its own frame, so they are built once (:class:`RaySet`) and grouped
into tiles of neighbouring rays. Each tile is summarised by a cone (axis, half angle); a primitive
is only tested against the rays of tiles whose cone meets the primitive's bounding sphere, which
is the screen-space culling that makes a 1400 x 1400 fisheye affordable on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from datasets.mei import MeiCamera
from datasets.synthetic.primitives import INF, INTERSECT, Kind, intersect_ground
from datasets.synthetic.texture import sky_colour, surface_colour
from datasets.synthetic.world import SyntheticWorld

PAIR_CHUNK = 1 << 15  # ray-primitive tests per batch (small enough to stay in cache)


@dataclass
class RaySet:
    """Unit rays of one sensor in its own frame, grouped into T tiles of P rays."""

    dirs: Tensor  # (3, T, P), components first so each is contiguous
    valid: Tensor  # (T, P) bool; padding and pixels outside a lens are False
    source: Tensor  # (H * W,) flat (T * P) ray of each output pixel; T * P where there is none
    axes: Tensor  # (T, 3) unit cone axis
    half_angle: Tensor  # (T,) cone half angle (radians)
    height: int
    width: int


def tile_rays(dirs: Tensor, valid: Tensor, tile: int) -> RaySet:
    """Group a ray image (H, W, 3) with validity (H, W) into ``tile`` x ``tile`` tiles (empty ones dropped)."""
    H, W = valid.shape
    Hp, Wp = -(-H // tile) * tile, -(-W // tile) * tile
    index = torch.full((Hp, Wp), -1, dtype=torch.int64)
    index[:H, :W] = torch.arange(H * W).reshape(H, W)
    padded_dirs = torch.zeros(Hp, Wp, 3, dtype=torch.float32)
    padded_dirs[:H, :W] = dirs.to(torch.float32)
    padded_valid = torch.zeros(Hp, Wp, dtype=torch.bool)
    padded_valid[:H, :W] = valid

    def to_tiles(x: Tensor) -> Tensor:  # (Hp, Wp, ...) -> (T, tile * tile, ...)
        x = x.reshape(Hp // tile, tile, Wp // tile, tile, *x.shape[2:]).transpose(1, 2)
        return x.reshape(-1, tile * tile, *x.shape[4:])

    t_dirs, t_valid, t_index = to_tiles(padded_dirs), to_tiles(padded_valid), to_tiles(index)
    keep = t_valid.any(dim=1)
    t_dirs, t_valid, t_index = t_dirs[keep], t_valid[keep], t_index[keep]
    t_dirs = torch.where(t_valid[..., None], t_dirs, torch.zeros_like(t_dirs))
    axes = t_dirs.sum(1)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    # Rays without a pixel copy their tile's axis: they are traced like the others and never written.
    t_dirs = torch.where(t_valid[..., None], t_dirs, axes[:, None].expand_as(t_dirs))
    cos = (t_dirs * axes[:, None]).sum(-1)
    half = torch.arccos(cos.clamp(-1.0, 1.0)).amax(dim=1) + 1e-4
    # For every output pixel, the flat (T * P) position of its ray, or T * P (a fill row) if it has none.
    source = torch.full((H * W,), t_valid.numel(), dtype=torch.int64)
    flat_valid = torch.nonzero(t_valid.reshape(-1)).squeeze(1)
    source[t_index.reshape(-1)[flat_valid]] = flat_valid
    return RaySet(t_dirs.permute(2, 0, 1).contiguous(), t_valid, source, axes, half, H, W)


def pinhole_rays(K: np.ndarray, width: int, height: int, tile: int = 16) -> RaySet:
    """Rays through pixel centres (integer coordinates) of a pinhole camera (OpenCV frame, K in pixels)."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    return tile_rays(torch.from_numpy(rays), torch.ones(height, width, dtype=torch.bool), tile)


def mei_rays(camera: MeiCamera, scale: float = 1.0, tile: int = 16) -> RaySet:
    """Rays of an MEI fisheye (exact model, tangential terms included), optionally at a reduced resolution.

    At ``scale < 1`` the output pixel (i, j) samples the full-resolution pixel centre
    ``((j + 0.5) / scale - 0.5, (i + 0.5) / scale - 0.5)``, the convention of ``cv2.resize``.
    """
    width, height = round(camera.width * scale), round(camera.height * scale)
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    pixels = torch.stack([(u + 0.5) * camera.width / width - 0.5, (v + 0.5) * camera.height / height - 0.5], -1)
    rays, valid = camera.unproject(pixels)
    return tile_rays(rays, valid, tile)


def lidar_rays(num_beams: int, azimuth_step_deg: float, top_deg: float = 2.0, bottom_deg: float = -24.9) -> RaySet:
    """Spinning-lidar rays in the velodyne frame (x forward, y left, z up): beams x azimuth columns."""
    elevation = np.radians(np.linspace(top_deg, bottom_deg, num_beams))
    azimuth = np.radians(np.arange(0.0, 360.0, azimuth_step_deg))
    e, a = np.meshgrid(elevation, azimuth, indexing="ij")
    rays = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1)
    return tile_rays(torch.from_numpy(rays), torch.ones(e.shape, dtype=torch.bool), 8)


@dataclass
class TraceResult:
    """Per-ray results in tile layout: ``distance`` (T, P) (inf: none) and ``prim_id`` (T, P) (-1: none)."""

    distance: Tensor
    prim_id: Tensor
    dirs_world: Tensor  # (3, T, P)
    origin: Tensor  # (3,)


def trace(world: SyntheticWorld, rays: RaySet, sensor_to_world: np.ndarray, max_distance: float) -> TraceResult:
    """Cast all rays of a sensor placed at ``sensor_to_world`` (4, 4) into the world."""
    T, P = rays.valid.shape
    pose = torch.as_tensor(sensor_to_world, dtype=torch.float32)
    R, origin = pose[:3, :3], pose[:3, 3]
    dirs = (R @ rays.dirs.view(3, -1)).view(3, T, P)
    origins = origin.unbind(0)
    ground = intersect_ground(origins, dirs.unbind(0)).contiguous()
    best = _pack(torch.where(ground <= max_distance, ground, INF), torch.zeros(1, dtype=torch.int64))  # (T, P)

    centres, radii = world.spheres[1:, :3], world.spheres[1:, 3]
    offset = centres - origin
    dist = offset.norm(dim=-1)
    near = torch.nonzero(dist - radii < max_distance).squeeze(1)
    offset, dist, radii = offset[near], dist[near], radii[near]
    axes = rays.axes @ R.T
    angle = torch.arccos(((axes @ offset.T) / dist).clamp(-1.0, 1.0))  # (T, M)
    reach = rays.half_angle[:, None] + torch.arcsin((radii / dist).clamp(max=1.0))
    tile_idx, local = torch.nonzero((angle <= reach) | (dist <= radii), as_tuple=True)
    prim = near[local] + 1
    kinds = world.kind_of[prim]
    step = max(1, PAIR_CHUNK // P)
    for kind in Kind:
        sel = kinds == int(kind)
        k_tiles, k_prims = tile_idx[sel], prim[sel]
        for start in range(0, len(k_tiles), step):
            tiles, prims = k_tiles[start : start + step], k_prims[start : start + step]
            rows = world.tables[kind][prims - world.first_id[kind]][:, None, :]  # (n, 1, k)
            t = INTERSECT[kind](origins, dirs[:, tiles].unbind(0), rows)  # (n, P)
            t = t.masked_fill_(t > max_distance, INF)
            best.scatter_reduce_(0, tiles[:, None].expand(-1, P), _pack(t, prims[:, None]), reduce="amin")
    distance, prim_id = _unpack(best)
    return TraceResult(distance, prim_id, dirs, origin)


def _pack(t: Tensor, ids: Tensor) -> Tensor:
    """(distance, id) -> one int64 whose order is the distance order (non-negative float32 bits sort as ints)."""
    return ((t + 0.0).view(torch.int32).to(torch.int64) << 32) | ids  # + 0.0 turns -0.0 into +0.0


def _unpack(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`_pack`; ids of rays without a hit become -1."""
    distance = (keys >> 32).to(torch.int32).view(torch.float32)
    ids = (keys & 0xFFFFFFFF).masked_fill(torch.isinf(distance), -1)
    return distance, ids


def shade(world: SyntheticWorld, result: TraceResult) -> Tensor:
    """Colours (T, P, 3) of traced rays: surface colour at hits, sky elsewhere."""
    dirs = result.dirs_world.reshape(3, -1)  # components first: column gathers are contiguous
    distance = result.distance.reshape(-1)
    ids = result.prim_id.reshape(-1)
    colours = torch.empty(len(ids), 3)
    hit = torch.nonzero(ids >= 0).squeeze(1)
    miss = torch.nonzero(ids < 0).squeeze(1)
    colours[miss] = sky_colour(dirs[:, miss].T)
    points = (result.origin[:, None] + dirs[:, hit] * distance[hit]).T.contiguous()  # (N, 3): rows gather fast
    hit_ids = ids[hit]
    normals = world.normals(points, hit_ids)
    colours[hit] = surface_colour(
        points, normals, world.colours[hit_ids], world.materials[hit_ids], world.phases[hit_ids]
    )
    return colours.view(*result.distance.shape, 3)


def to_image(rays: RaySet, values: Tensor, fill: float = 0.0) -> Tensor:
    """Gather per-ray values (T, P, C) into an image (H, W, C); pixels without a ray get ``fill``."""
    C = values.shape[-1]
    rows = torch.cat([values.reshape(-1, C), torch.full((1, C), fill, dtype=values.dtype)])
    return rows[rays.source].view(rays.height, rays.width, C)


def render_rgb(world: SyntheticWorld, rays: RaySet, sensor_to_world: np.ndarray, max_distance: float) -> np.ndarray:
    """Render an 8-bit RGB image (H, W, 3); pixels without a ray (outside a fisheye lens) are black."""
    colours = shade(world, trace(world, rays, sensor_to_world, max_distance))
    return (to_image(rays, colours) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def render_lidar(world: SyntheticWorld, rays: RaySet, velo_to_world: np.ndarray, max_range: float) -> np.ndarray:
    """One scan as (N, 4) float32 (x, y, z, reflectance) in the velodyne frame; returns under 1 m are dropped."""
    result = trace(world, rays, velo_to_world, max_range)
    keep = (result.prim_id >= 0) & (result.distance > 1.0) & rays.valid
    points = rays.dirs[:, keep].T * result.distance[keep, None]
    reflectance = 0.1 + 0.3 * world.colours[result.prim_id[keep]].mean(-1)
    return torch.cat([points, reflectance[:, None]], 1).numpy().astype(np.float32)


def colours_along(world: SyntheticWorld, origins: Tensor, dirs: Tensor, max_distance: float = INF) -> Tensor:
    """Colours (N, 3) in [0, 1] seen along arbitrary rays (N, 3) (unit dirs), via the generic :meth:`cast`."""
    hit = world.cast(origins, dirs, max_distance)
    colours = sky_colour(dirs.to(torch.float32))
    ok = hit.prim_id >= 0
    points = origins.to(torch.float32)[ok] + dirs.to(torch.float32)[ok] * hit.distance[ok, None]
    ids = hit.prim_id[ok]
    colours[ok] = surface_colour(points, hit.normal[ok], world.colours[ids], world.materials[ids], world.phases[ids])
    return colours
