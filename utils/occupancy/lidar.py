"""Occupancy reference from accumulated lidar scans (REFERENCE 7.1 steps 1-3), vectorised over scans and points.

For every scan the points of a height band (plus far points) are binned by their velodyne-frame azimuth
into 360 one-degree bins keeping the minimum horizontal distance; a query point is "occupied by scan j"
when it lies behind that surface (or within 3 m of the scanner). A point is occupied when nearly all
scans agree. Official quirks kept on purpose (decision 1) are named where they happen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

NUM_BINS = 360
MIN_DIST = 3.0  # points closer than this to the scanner count as occupied


@dataclass(frozen=True)
class PolarSurface:
    """Per scan, the padded polar table of the first lidar surface: angles and distances (S, NUM_BINS + 2)."""

    angles: Tensor
    dists: Tensor


@dataclass(frozen=True)
class LidarReference:
    """The model-independent part of the reference for ``P`` query points (what the cache stores)."""

    occupied: Tensor  # (P,) bool, occ_score > (n - 2) / n
    visible: Tensor  # (P,) bool, in front of the surface of the FIRST scan
    num_scans: int


def band_mask(points_level: Tensor, y_range: tuple[float, float], far_dist: float) -> Tensor:
    """(N,) bool: levelled-frame y in [y0, y1] OR levelled-frame norm >= ``far_dist`` (points (N, 3))."""
    y = points_level[:, 1]
    return ((y >= y_range[0]) & (y <= y_range[1])) | (points_level.norm(dim=-1) >= far_dist)


def bin_edges(dtype=torch.float64) -> Tensor:
    """(NUM_BINS + 1,) bin borders ``linspace(-pi, pi, 361)``."""
    return torch.linspace(-math.pi, math.pi, NUM_BINS + 1, dtype=dtype)


def polar_surfaces(scans_xy: list[Tensor]) -> PolarSurface:
    """Padded polar surface tables of ``S`` scans, given each scan's kept velodyne-frame (x, y) (N_s, 2).

    Per scan: bin ``i`` holds azimuths in ``[edge_i, edge_{i+1})`` (an azimuth of exactly +pi falls in
    no bin); its value is the minimum horizontal distance ``sqrt(x^2 + y^2)``. Empty bins take the previous
    bin's value; empty bins before the first filled one take the distance of the scan's lowest-azimuth
    point (official quirk: not that bin's minimum, which may be smaller). The table is padded with the last
    bin at ``angle - 2 pi`` in front and the first bin at ``angle + 2 pi`` behind for wrap-around.
    """
    S = len(scans_xy)
    if any(len(xy) == 0 for xy in scans_xy):
        raise ValueError("a lidar scan has no point in the height band or beyond the far distance")
    dtype = scans_xy[0].dtype
    counts = torch.tensor([len(xy) for xy in scans_xy])
    xy = torch.cat(scans_xy)  # (N, 2)
    scan_idx = torch.repeat_interleave(torch.arange(S), counts)  # (N,)
    angles = torch.atan2(xy[:, 1], xy[:, 0])
    dists = xy.norm(dim=-1)  # horizontal distance in the velodyne frame

    edges = bin_edges(dtype)
    bins = torch.searchsorted(edges, angles, right=True) - 1  # edge_i <= a < edge_{i+1}
    inside = (bins >= 0) & (bins < NUM_BINS)
    flat = scan_idx[inside] * NUM_BINS + bins[inside]
    binned = torch.full((S * NUM_BINS,), math.inf, dtype=dtype)
    binned.scatter_reduce_(0, flat, dists[inside], reduce="amin")
    binned = binned.view(S, NUM_BINS)
    filled = torch.isfinite(binned)

    # Distance of the lowest-azimuth point of each scan: the value before the first filled bin.
    key = scan_idx.to(dtype) * 10.0 + angles  # angles in [-pi, pi], so scans stay apart
    order = torch.argsort(key)
    starts = torch.cumsum(counts, 0) - counts
    first_dist = dists[order[starts]]  # (S,)

    # Forward fill: index of the last filled bin at or before each bin (-1 = none yet).
    positions = torch.where(filled, torch.arange(NUM_BINS).expand(S, -1), torch.full_like(binned, -1, dtype=torch.long))
    last = torch.cummax(positions, dim=1).values  # (S, NUM_BINS)
    values = torch.where(last >= 0, binned.gather(1, last.clamp_min(0)), first_dist[:, None])

    centres = (0.5 * (edges[:-1] + edges[1:])).expand(S, -1)  # (S, NUM_BINS)
    pad_angles = torch.cat([centres[:, -1:] - 2 * math.pi, centres, centres[:, :1] + 2 * math.pi], dim=1)
    pad_dists = torch.cat([values[:, -1:], values, values[:, :1]], dim=1)
    return PolarSurface(angles=pad_angles.contiguous(), dists=pad_dists.contiguous())


def surface_distance(surface: PolarSurface, angles: Tensor) -> Tensor:
    """Linearly interpolated surface distance (S, P) at query azimuths (S, P), per scan."""
    right = torch.searchsorted(surface.angles, angles.contiguous())  # first table angle >= query
    left = right - 1
    a0, a1 = surface.angles.gather(1, left), surface.angles.gather(1, right)
    d0, d1 = surface.dists.gather(1, left), surface.dists.gather(1, right)
    t = (angles - a0) / (a1 - a0)
    return d0 * (1 - t) + d1 * t


def occupied_by_scans(points_level: Tensor, surface: PolarSurface, level_to_velo: Tensor) -> Tensor:
    """(S, P) bool: query point p (levelled frame, (P, 3)) is behind scan s's surface or within 3 m of it.

    ``level_to_velo`` (S, 4, 4) maps the levelled frame into each scan's velodyne frame.
    """
    R, t = level_to_velo[:, :3, :3], level_to_velo[:, :3, 3]
    p = points_level.to(R.dtype) @ R.transpose(1, 2) + t[:, None]  # (S, P, 3)
    angles = torch.atan2(p[..., 1], p[..., 0])
    # Official quirk: the norm of the homogeneous 4-vector (x, y, z, 1), i.e. sqrt(x^2 + y^2 + z^2 + 1).
    dists = torch.sqrt((p**2).sum(dim=-1) + 1.0)
    return (dists > surface_distance(surface, angles)) | (dists < MIN_DIST)


def lidar_reference(
    points_level: Tensor,
    scans: list[Tensor],
    velo_to_level: Tensor,
    y_range: tuple[float, float],
    far_dist: float,
) -> LidarReference:
    """The lidar part of the reference for query points (P, 3) in the levelled frame: the scans' points in the
    height band ``y_range``, and those at least ``far_dist`` away whatever their height (both from the query grid,
    :class:`utils.occupancy.grid.QueryGrid`).

    ``scans``: S scans (N_s, >=3) in their own velodyne frames, the first one being the input frame's;
    ``velo_to_level`` (S, 4, 4). With ``n = S`` (20 unless the sequence ends first):
    ``occ_score = (1 + #scans saying occupied) / n`` and occupied iff ``occ_score > (n - 2) / n``.
    """
    velo_to_level = velo_to_level.to(torch.float64)
    kept = []
    for scan, T in zip(scans, velo_to_level, strict=True):
        xyz = scan[:, :3].to(torch.float64)
        in_level = xyz @ T[:3, :3].T + T[:3, 3]
        kept.append(xyz[band_mask(in_level, y_range, far_dist), :2])
    surface = polar_surfaces(kept)
    level_to_velo = torch.linalg.inv(velo_to_level)
    occupied = occupied_by_scans(points_level, surface, level_to_velo)  # (S, P)
    n = len(scans)
    # Official: scores start at 1 (not 0), so (1 + count) / n is compared with (n - 2) / n.
    occ_score = (1.0 + occupied.sum(dim=0).to(torch.float64)) / n
    return LidarReference(occupied=occ_score > (n - 2) / n, visible=~occupied[0], num_scans=n)
