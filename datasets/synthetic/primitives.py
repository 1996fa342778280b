"""Analytic solids of the synthetic world: ray intersection, inside tests and surface normals.

Three convex kinds, each stored as one float32 table row (so a batch of pairs gathers rows):

* box: ``(cx, cy, cz, hx, hy, hz, cos_yaw, sin_yaw)``, a box rotated about the world z axis,
* cylinder: ``(cx, cy, z0, z1, radius)``, vertical (z up),
* ellipsoid: ``(cx, cy, cz, rx, ry, rz)``, axis aligned.

The ground is the half space ``z < 0``. Every function broadcasts over leading dimensions: rays
``origins`` and ``dirs`` as (x, y, z) component tensors against parameter rows ``params (..., k)``. Intersections
return the distance of the first entry along the ray (0 if the origin is inside, ``inf`` for a
miss), so "just before the hit is free, just after is solid" holds by convexity.
"""

from __future__ import annotations

from enum import IntEnum

import torch
from torch import Tensor

INF = float("inf")
_TINY = 1e-12


class Kind(IntEnum):
    """Primitive kinds; the ground has its own id 0 and no table."""

    BOX = 0
    CYLINDER = 1
    ELLIPSOID = 2


PARAM_SIZE = {Kind.BOX: 8, Kind.CYLINDER: 5, Kind.ELLIPSOID: 6}


def _to_box_frame(params: Tensor, vectors: Tensor, translate: bool) -> Tensor:
    """World vectors (..., 3) -> box-local coordinates (..., 3) (rotation about z by -yaw)."""
    c, s = params[..., 6], params[..., 7]
    v = vectors - params[..., 0:3] if translate else vectors
    return torch.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1], v[..., 2]], dim=-1)


Vec3 = tuple[Tensor, Tensor, Tensor]


def _enter_distance(t_near: Tensor, t_far: Tensor, hit: Tensor | None = None) -> Tensor:
    """First non-negative distance of a convex interval [t_near, t_far], inf where missed."""
    t_enter = t_near.clamp_min(0.0)
    ok = t_far >= t_enter
    if hit is not None:
        ok &= hit
    return t_enter.masked_fill_(~ok, INF)


def intersect_box(origins: Vec3, dirs: Vec3, params: Tensor) -> Tensor:
    """Entry distance (...) of rays into yawed boxes (slab test in the box frame).

    ``origins`` and ``dirs`` are (x, y, z) component tensors, so a shared origin costs nothing per ray.
    """
    c, s = params[..., 6], params[..., 7]
    ox, oy, oz = origins[0] - params[..., 0], origins[1] - params[..., 1], origins[2] - params[..., 2]
    local_o = (c * ox + s * oy, c * oy - s * ox, oz)
    local_d = (c * dirs[0] + s * dirs[1], c * dirs[1] - s * dirs[0], dirs[2])
    t_near = t_far = None
    for axis in range(3):
        half = params[..., 3 + axis]
        # Division by an exactly zero component gives +-inf, which is the right slab answer.
        inv = local_d[axis].reciprocal()
        t1, t2 = (-half - local_o[axis]) * inv, (half - local_o[axis]) * inv
        lo, hi = torch.minimum(t1, t2), torch.maximum(t1, t2)
        t_near = lo if t_near is None else torch.maximum(t_near, lo)
        t_far = hi if t_far is None else torch.minimum(t_far, hi)
    return _enter_distance(t_near, t_far)


def intersect_cylinder(origins: Vec3, dirs: Vec3, params: Tensor) -> Tensor:
    """Entry distance (...) of rays into vertical capped cylinders (infinite cylinder cut by a z slab)."""
    vx, vy = origins[0] - params[..., 0], origins[1] - params[..., 1]
    dx, dy = dirs[0], dirs[1]
    radius = params[..., 4]
    a = (dx * dx + dy * dy).clamp_min(_TINY)
    b = vx * dx + vy * dy
    # b^2 - a c written with Lagrange's identity, which avoids float32 cancellation far from the origin.
    cross = vx * dy - vy * dx
    disc = a * radius * radius - cross * cross
    root = disc.clamp_min(0.0).sqrt()
    # A vertical ray (a -> 0) gives +-huge side distances: inside the circle iff disc >= 0.
    t_side_near, t_side_far = (-b - root) / a, (-b + root) / a
    inv_dz = dirs[2].reciprocal()
    tz1, tz2 = (params[..., 2] - origins[2]) * inv_dz, (params[..., 3] - origins[2]) * inv_dz
    t_near = torch.maximum(t_side_near, torch.minimum(tz1, tz2))
    t_far = torch.minimum(t_side_far, torch.maximum(tz1, tz2))
    return _enter_distance(t_near, t_far, disc >= 0)


def intersect_ellipsoid(origins: Vec3, dirs: Vec3, params: Tensor) -> Tensor:
    """Entry distance (...) of rays into axis-aligned ellipsoids (unit sphere after scaling)."""
    o = [(origins[i] - params[..., i]) / params[..., 3 + i] for i in range(3)]
    d = [dirs[i] / params[..., 3 + i] for i in range(3)]
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    # b^2 - a (|o|^2 - 1) = a - |o x d|^2 (Lagrange's identity; no float32 cancellation).
    cx, cy, cz = o[1] * d[2] - o[2] * d[1], o[2] * d[0] - o[0] * d[2], o[0] * d[1] - o[1] * d[0]
    disc = a - (cx * cx + cy * cy + cz * cz)
    root = disc.clamp_min(0.0).sqrt()
    return _enter_distance((-b - root) / a, (-b + root) / a, disc >= 0)


def intersect_ground(origins: Vec3, dirs: Vec3) -> Tensor:
    """Entry distance (...) of rays into the ground half space z < 0."""
    oz, dz = torch.broadcast_tensors(origins[2], dirs[2])
    t = -oz / dz
    hit = (dz < 0) & (t >= 0)
    return torch.where(oz <= 0, torch.zeros_like(t), torch.where(hit, t, torch.full_like(t, INF)))


INTERSECT = {Kind.BOX: intersect_box, Kind.CYLINDER: intersect_cylinder, Kind.ELLIPSOID: intersect_ellipsoid}


def inside_box(points: Tensor, params: Tensor) -> Tensor:
    """Whether points (..., 3) lie strictly inside boxes (...)."""
    local = _to_box_frame(params, points, translate=True)
    return (local.abs() < params[..., 3:6]).all(dim=-1)


def inside_cylinder(points: Tensor, params: Tensor) -> Tensor:
    """Whether points (..., 3) lie strictly inside vertical cylinders (...)."""
    dx, dy = points[..., 0] - params[..., 0], points[..., 1] - params[..., 1]
    z = points[..., 2]
    return (dx * dx + dy * dy < params[..., 4] ** 2) & (z > params[..., 2]) & (z < params[..., 3])


def inside_ellipsoid(points: Tensor, params: Tensor) -> Tensor:
    """Whether points (..., 3) lie strictly inside ellipsoids (...)."""
    q = (points - params[..., 0:3]) / params[..., 3:6]
    return (q * q).sum(-1) < 1.0


INSIDE = {Kind.BOX: inside_box, Kind.CYLINDER: inside_cylinder, Kind.ELLIPSOID: inside_ellipsoid}


def normal_box(points: Tensor, params: Tensor) -> Tensor:
    """Outward normals (..., 3) of surface points on boxes: the face the point is closest to."""
    local = _to_box_frame(params, points, translate=True)
    gap = (params[..., 3:6] - local.abs()).abs()
    axis = gap.argmin(dim=-1, keepdim=True)
    n_local = torch.zeros_like(local).scatter(-1, axis, torch.sign(local).gather(-1, axis))
    c, s = params[..., 6], params[..., 7]
    return torch.stack(
        [c * n_local[..., 0] - s * n_local[..., 1], s * n_local[..., 0] + c * n_local[..., 1], n_local[..., 2]], -1
    )


def normal_cylinder(points: Tensor, params: Tensor) -> Tensor:
    """Outward normals (..., 3) on vertical cylinders (side or cap, whichever is closer)."""
    dx, dy = points[..., 0] - params[..., 0], points[..., 1] - params[..., 1]
    rr = torch.sqrt(dx * dx + dy * dy).clamp_min(_TINY)
    side = (rr - params[..., 4]).abs()
    top = (points[..., 2] - params[..., 3]).abs()
    bottom = (points[..., 2] - params[..., 2]).abs()
    zero = torch.zeros_like(dx)
    n = torch.stack([dx / rr, dy / rr, zero], -1)
    n = torch.where((top < side).unsqueeze(-1), torch.stack([zero, zero, zero + 1.0], -1), n)
    return torch.where(((bottom < side) & (bottom < top)).unsqueeze(-1), torch.stack([zero, zero, zero - 1.0], -1), n)


def normal_ellipsoid(points: Tensor, params: Tensor) -> Tensor:
    """Outward normals (..., 3) on axis-aligned ellipsoids (gradient of the implicit function)."""
    radii = params[..., 3:6]
    n = (points - params[..., 0:3]) / (radii * radii)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(_TINY)


NORMAL = {Kind.BOX: normal_box, Kind.CYLINDER: normal_cylinder, Kind.ELLIPSOID: normal_ellipsoid}
