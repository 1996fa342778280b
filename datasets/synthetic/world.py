"""The synthetic street world: exact occupancy, ray casting and depth queries.

World frame as in KITTI-360: z up, ground plane ``z = 0`` (the ground is everything below it).
The world is rebuilt bit-for-bit from :class:`WorldParams` (seed + extent), which is what
``world.json`` stores, so tests and evaluation can query the exact ground truth.

Primitive ids: 0 is the ground, then boxes, cylinders and ellipsoids in table order.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datasets.mei import MeiCamera
from datasets.synthetic import layout as L
from datasets.synthetic.primitives import INF, INSIDE, INTERSECT, NORMAL, Kind, intersect_ground

GENERATOR_VERSION = "1.1"  # 1.1: isotropic texture (six waves per scale)
CAST_CHUNK = 4096


@dataclass(frozen=True)
class WorldParams:
    """Everything the world depends on."""

    seed: int = 0
    s_min: float = -60.0  # arc-length extent of the street (metres)
    s_max: float = 600.0


@dataclass
class CastResult:
    """First hits of N rays: ``distance`` (N,) (inf for none), ``normal`` (N, 3), ``prim_id`` (N,) (-1 none)."""

    distance: Tensor
    normal: Tensor
    prim_id: Tensor


class SyntheticWorld:
    """Analytic street scene built from :class:`WorldParams`."""

    def __init__(self, params: WorldParams):
        self.params = params
        self.path = L.make_path(params.seed, params.s_min - 20.0, params.s_max + 20.0)
        layout = L.make_layout(params.seed, self.path, params.s_min, params.s_max)
        self.tables: dict[Kind, Tensor] = {}
        self.first_id: dict[Kind, int] = {}
        colours, materials, spheres = [[0.45, 0.44, 0.43]], [L.GROUND], [[0.0, 0.0, 0.0, INF]]
        next_id = 1
        for kind in Kind:
            rows = layout.params[kind]
            table = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), -1)
            self.tables[kind] = table
            self.first_id[kind] = next_id
            next_id += len(rows)
            colours += layout.colours[kind]
            materials += layout.materials[kind]
            spheres += _bounding_spheres(kind, table).tolist()
        self.num_ids = next_id
        self.kind_of = torch.full((next_id,), -1, dtype=torch.int64)
        for kind in Kind:
            self.kind_of[self.first_id[kind] : self.first_id[kind] + len(self.tables[kind])] = int(kind)
        self.colours = torch.tensor(colours, dtype=torch.float32)  # (M, 3)
        self.materials = torch.tensor(materials, dtype=torch.int64)  # (M,)
        self.spheres = torch.tensor(spheres, dtype=torch.float32)  # (M, 4) centre, radius; ground: inf
        rng = np.random.default_rng(params.seed + 7)
        self.phases = torch.tensor(rng.uniform(0, 2 * math.pi, next_id), dtype=torch.float32)  # (M,)

    # ----------------------------------------------------------------- persistence
    def to_json(self, path: Path, extra: dict | None = None) -> None:
        """Write ``world.json``: parameters, generator version and any ``extra`` metadata."""
        data = {"generator_version": GENERATOR_VERSION, "params": asdict(self.params), **(extra or {})}
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)

    @classmethod
    def from_json(cls, path: Path) -> SyntheticWorld:
        """Rebuild the exact world described by a ``world.json``."""
        data = json.loads(Path(path).read_text())
        return cls(WorldParams(**data["params"]))

    # ----------------------------------------------------------------- poses
    def vehicle_to_world(self, s: np.ndarray, lateral: float, height: float) -> np.ndarray:
        """(F, 4, 4) float64 poses of a frame (x forward, y left, z up) at road coordinates ``s``."""
        s = np.atleast_1d(np.asarray(s, dtype=np.float64))
        xy, heading = self.path.to_world(s, np.full_like(s, lateral))
        T = np.zeros((len(s), 4, 4))
        c, si = np.cos(heading), np.sin(heading)
        T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -si, si, c
        T[:, 2, 2] = T[:, 3, 3] = 1.0
        T[:, :2, 3], T[:, 2, 3] = xy, height
        return T

    # ----------------------------------------------------------------- queries
    def occupied(self, points: Tensor) -> Tensor:
        """Whether world points (N, 3) are inside a solid (N,) bool; the ground is ``z < 0``."""
        points = points.to(torch.float32)
        result = points[:, 2] < 0
        order = torch.argsort(points[:, 0])
        xs = points[order, 0].contiguous()
        for kind in Kind:
            table = self.tables[kind]
            first = self.first_id[kind]
            for i in range(len(table)):
                cx, cy, cz, r = self.spheres[first + i].tolist()
                lo, hi = torch.searchsorted(xs, torch.tensor([cx - r, cx + r])).tolist()
                if hi <= lo:
                    continue
                idx = order[lo:hi]
                p = points[idx]
                near = ((p[:, 1] - cy).abs() < r) & ((p[:, 2] - cz).abs() < r)
                idx, p = idx[near], p[near]
                result[idx] |= INSIDE[kind](p, table[i])
        return result

    def cast(self, origins: Tensor, dirs: Tensor, max_distance: float = INF) -> CastResult:
        """First hit of rays (N, 3) with unit directions (N, 3); distances beyond ``max_distance`` are inf."""
        origins, dirs = origins.to(torch.float32), dirs.to(torch.float32)
        best = intersect_ground(origins.unbind(-1), dirs.unbind(-1)).contiguous()
        best_id = torch.where(torch.isfinite(best), 0, -1)
        # Bounding-sphere test as matrix products (no (rays, primitives, 3) temporaries), in float64 so that the
        # expanded squares lose nothing at street-scale coordinates: with v = c - o,
        # along = d.v = d.c - d.o and |v|^2 = |c|^2 - 2 o.c + |o|^2.
        centres, radii = self.spheres[1:, :3].double(), self.spheres[1:, 3].double()
        centres_sq, radii_sq = (centres * centres).sum(-1), radii * radii
        for start in range(0, len(origins), CAST_CHUNK):
            o, d = origins[start : start + CAST_CHUNK], dirs[start : start + CAST_CHUNK]
            o64, d64 = o.double(), d.double()
            along = d64 @ centres.T - (d64 * o64).sum(-1, keepdim=True)  # (C, M)
            dist_sq = centres_sq - 2.0 * (o64 @ centres.T) + (o64 * o64).sum(-1, keepdim=True)
            miss2 = dist_sq - along * along
            ray_idx, prim = torch.nonzero((miss2 <= radii_sq) & (along + radii >= 0), as_tuple=True)
            prim = prim + 1
            t = torch.full_like(ray_idx, INF, dtype=torch.float32)
            for kind in Kind:
                sel = self.kind_of[prim] == int(kind)
                rows = self.tables[kind][prim[sel] - self.first_id[kind]]
                t[sel] = INTERSECT[kind](o[ray_idx[sel]].unbind(-1), d[ray_idx[sel]].unbind(-1), rows)
            chunk_best = best[start : start + CAST_CHUNK]
            chunk_best.scatter_reduce_(0, ray_idx, t, reduce="amin")
            win = torch.isfinite(t) & (t == chunk_best[ray_idx])
            best_id[start : start + CAST_CHUNK][ray_idx[win]] = prim[win]
        best = torch.where(best <= max_distance, best, torch.full_like(best, INF))
        best_id = torch.where(torch.isfinite(best), best_id, -1)
        points = origins + dirs * torch.where(torch.isfinite(best), best, 0.0)[:, None]
        return CastResult(best, self.normals(points, best_id), best_id)

    def normals(self, points: Tensor, prim_id: Tensor) -> Tensor:
        """Outward unit normals (N, 3) of surface points (N, 3) on primitives ``prim_id`` (N,)."""
        normals = torch.zeros_like(points)
        normals[:, 2] = 1.0  # the ground
        kinds = self.kind_of[prim_id.clamp_min(0)].masked_fill(prim_id <= 0, -1)
        for kind in Kind:
            idx = torch.nonzero(kinds == int(kind)).squeeze(1)
            if len(idx):
                rows = self.tables[kind][prim_id[idx] - self.first_id[kind]]
                normals[idx] = NORMAL[kind](points[idx], rows)
        return normals

    def depth_pinhole(self, cam_to_world: Tensor, K: Tensor, pixels: Tensor) -> Tensor:
        """Camera z-depth (N,) of the first hit through pixel centres (N, 2) (K in pixels), inf for none."""
        cam_to_world = cam_to_world.to(torch.float64)
        uv1 = torch.cat([pixels.to(torch.float64), torch.ones_like(pixels[:, :1], dtype=torch.float64)], 1)
        rays = uv1 @ torch.linalg.inv(K.to(torch.float64)).T  # (N, 3), z = 1
        norm = rays.norm(dim=-1)
        dirs = (rays / norm[:, None]) @ cam_to_world[:3, :3].T
        hit = self.cast(cam_to_world[:3, 3].expand_as(dirs), dirs)
        return hit.distance / norm.to(torch.float32)

    def distance_mei(self, cam_to_world: Tensor, camera: MeiCamera, pixels: Tensor) -> Tensor:
        """Distance (N,) along the MEI ray through pixel centres (N, 2); nan outside the lens, inf for none."""
        rays, valid = camera.unproject(pixels.to(torch.float64))
        dirs = rays @ cam_to_world.to(torch.float64)[:3, :3].T
        hit = self.cast(cam_to_world[:3, 3].to(torch.float64).expand_as(dirs), dirs)
        return torch.where(valid, hit.distance, torch.full_like(hit.distance, float("nan")))


def _bounding_spheres(kind: Kind, table: Tensor) -> Tensor:
    """Bounding spheres (n, 4) of a primitive table, 1 cm larger than exact (float32 safety)."""
    return _exact_bounding_spheres(kind, table) + torch.tensor([0.0, 0.0, 0.0, 0.01])


def _exact_bounding_spheres(kind: Kind, table: Tensor) -> Tensor:
    if kind == Kind.BOX:
        return torch.cat([table[:, :3], table[:, 3:6].norm(dim=-1, keepdim=True)], 1)
    if kind == Kind.CYLINDER:
        half = (table[:, 3] - table[:, 2]) / 2
        centre = torch.stack([table[:, 0], table[:, 1], table[:, 2] + half], 1)
        return torch.cat([centre, torch.sqrt(half**2 + table[:, 4] ** 2)[:, None]], 1)
    return torch.cat([table[:, :3], table[:, 3:6].amax(dim=-1, keepdim=True)], 1)
