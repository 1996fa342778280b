"""Analytic queries of the synthetic world: hand-computed hits, occupied/cast consistency, depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.synthetic import primitives as P
from datasets.synthetic import render as R
from datasets.synthetic.world import SyntheticWorld, WorldParams


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldParams(seed=3, s_min=-20.0, s_max=120.0))


def _vec(values):
    return torch.tensor(values, dtype=torch.float32).unbind(-1)


def test_hand_computed_hits():
    box = torch.tensor([5.0, 0.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.0])  # centre x=5, half 1 -> front face x=4
    assert P.intersect_box(_vec([0.0, 0.0, 1.0]), _vec([1.0, 0.0, 0.0]), box).item() == pytest.approx(4.0)
    yawed = torch.tensor([5.0, 0.0, 1.0, 1.0, 1.0, 1.0, np.cos(np.pi / 4), np.sin(np.pi / 4)])
    hit = P.intersect_box(_vec([0.0, 0.0, 1.0]), _vec([1.0, 0.0, 0.0]), yawed).item()
    assert hit == pytest.approx(5.0 - np.sqrt(2.0), abs=1e-5)  # diamond corner
    cylinder = torch.tensor([0.0, 3.0, 0.0, 2.0, 0.5])
    assert P.intersect_cylinder(_vec([0.0, 0.0, 1.0]), _vec([0.0, 1.0, 0.0]), cylinder).item() == pytest.approx(2.5)
    assert P.intersect_cylinder(_vec([0.0, 3.0, 5.0]), _vec([0.0, 0.0, -1.0]), cylinder).item() == pytest.approx(3.0)
    ellipsoid = torch.tensor([0.0, 0.0, 10.0, 1.0, 1.0, 2.0])
    assert P.intersect_ellipsoid(_vec([0.0, 0.0, 0.0]), _vec([0.0, 0.0, 1.0]), ellipsoid).item() == pytest.approx(8.0)
    assert P.intersect_ground(_vec([0.0, 0.0, 2.0]), _vec([0.6, 0.0, -0.8])).item() == pytest.approx(2.5)
    assert np.isinf(P.intersect_ground(_vec([0.0, 0.0, 2.0]), _vec([1.0, 0.0, 0.0])).item())


def test_occupied_cast_consistency(world):
    gen = torch.Generator().manual_seed(0)
    N = 4000
    xy, _ = world.path.to_world(np.linspace(0, 100, N), np.zeros(N))
    origins = torch.cat([torch.tensor(xy, dtype=torch.float32), torch.full((N, 1), 1.6)], 1)
    dirs = torch.randn(N, 3, generator=gen)
    dirs[:, 2] = dirs[:, 2].abs() * -0.3
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    hit = world.cast(origins, dirs)
    ok = torch.isfinite(hit.distance) & (hit.distance > 0.1)
    assert ok.float().mean() > 0.9
    before = origins + dirs * (hit.distance - 5e-3)[:, None]
    after = origins + dirs * (hit.distance + 5e-3)[:, None]
    assert not world.occupied(before[ok]).any()
    assert world.occupied(after[ok]).float().mean() > 0.995  # grazing hits on thin poles may exit again
    # Normals face the ray.
    assert ((hit.normal[ok] * dirs[ok]).sum(-1) < 1e-4).all()


def test_occupied_ground_and_free_air(world):
    points = torch.tensor([[0.0, 0.0, -0.1], [0.0, 0.0, 30.0]])
    assert world.occupied(points).tolist() == [True, False]


def test_tiled_trace_matches_generic_cast(world):
    K = np.array([[150.0, 0.0, 99.5], [0.0, 150.0, 29.5], [0.0, 0.0, 1.0]])
    rays = R.pinhole_rays(K, 200, 60)
    vehicle = world.vehicle_to_world(np.array([30.0]), -1.9, 0.0)[0]
    cam = np.eye(4)
    cam[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    cam[:3, 3] = [1.5, 0.0, 1.6]
    cam_to_world = vehicle @ cam
    result = R.trace(world, rays, cam_to_world, 150.0)
    distance = R.to_image(rays, result.distance[..., None], fill=float("inf"))[..., 0]
    cam_dirs = R.to_image(rays, rays.dirs.permute(1, 2, 0))
    rendered_z = (distance * cam_dirs[..., 2]).reshape(-1)
    v, u = torch.meshgrid(torch.arange(60.0), torch.arange(200.0), indexing="ij")
    pixels = torch.stack([u, v], -1).reshape(-1, 2)
    analytic_z = world.depth_pinhole(torch.from_numpy(cam_to_world), torch.from_numpy(K), pixels)
    close = torch.isfinite(analytic_z) & (analytic_z < 100)
    assert close.float().mean() > 0.5
    assert torch.allclose(rendered_z[close], analytic_z[close], rtol=1e-4, atol=1e-3)
