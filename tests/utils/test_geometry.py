"""Pinhole geometry and rigid transforms: identities and hand-computed values."""

import math

import pytest
import torch

from utils.geometry import (
    camera_rays,
    denormalize_intrinsics,
    fisheye_virtual_rotation,
    invert_rigid,
    make_rigid,
    normalize_intrinsics,
    project,
    ray_grid,
    rotation_x,
    rotation_y,
    transform_points,
    unproject,
)

# KITTI-360 perspective camera (P_rect_00) and its official normalised values.
K360 = torch.tensor(
    [[552.554261, 0.0, 682.049453], [0.0, 552.554261, 238.769549], [0.0, 0.0, 1.0]], dtype=torch.float64
)
W360, H360 = 1408, 376


def test_normalized_intrinsics_match_official_kitti360_values():
    K_norm = normalize_intrinsics(K360, W360, H360)
    assert K_norm[0, 0].item() == pytest.approx(0.7849, abs=1e-4)
    assert K_norm[1, 1].item() == pytest.approx(2.9391, abs=1e-4)
    assert K_norm[0, 2].item() == pytest.approx(-0.0312, abs=1e-4)
    assert K_norm[1, 2].item() == pytest.approx(0.2701, abs=1e-4)
    assert torch.allclose(denormalize_intrinsics(K_norm, W360, H360), K360)


def test_ray_grid_is_linspace_minus_one_to_one():
    grid = ray_grid(3, 5)
    assert grid.shape == (3, 5, 2)
    assert torch.allclose(grid[0, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.allclose(grid[:, 0, 1], torch.tensor([-1.0, 0.0, 1.0]))


def test_project_unproject_roundtrip_over_whole_image():
    K_norm = normalize_intrinsics(K360, W360, H360)
    uv = ray_grid(H360, W360, dtype=torch.float64).reshape(-1, 2)
    z = torch.linspace(0.5, 80.0, uv.shape[0], dtype=torch.float64)
    points = unproject(uv, z, K_norm)
    uv_back, z_back, invalid = project(points, K_norm)
    assert torch.allclose(uv_back, uv, atol=1e-12)
    assert torch.allclose(z_back, z)
    # Pixels exactly on the border of the official grid sit at |u| = 1, where float rounding
    # decides the (strict) validity test; every pixel inside is valid.
    border = (uv.abs() > 1.0 - 1e-9).any(dim=-1)
    assert not invalid[~border].any()


def test_optical_axis_lands_on_principal_point():
    K_norm = normalize_intrinsics(K360, W360, H360)
    uv, z, invalid = project(torch.tensor([0.0, 0.0, 7.0], dtype=torch.float64), K_norm)
    assert torch.allclose(uv, K_norm[:2, 2])
    assert z.item() == 7.0 and not invalid.item()


def test_hand_computed_pinhole_pixel():
    # Point (1, 0.5, 10): pixel x = 552.554261 * 0.1 + 682.049453 = 737.3048791,
    # normalised u = 2 * 737.3048791 / 1408 - 1 = 0.0473081;
    # pixel y = 552.554261 * 0.05 + 238.769549 = 266.3972621, v = 2 * 266.3972621 / 376 - 1 = 0.4170067.
    K_norm = normalize_intrinsics(K360, W360, H360)
    uv, _, _ = project(torch.tensor([1.0, 0.5, 10.0], dtype=torch.float64), K_norm)
    assert uv[0].item() == pytest.approx(0.0473081, abs=1e-7)
    assert uv[1].item() == pytest.approx(0.4170067, abs=1e-7)


def test_validity_rule_behind_camera_and_outside():
    K_norm = torch.eye(3, dtype=torch.float64)
    points = torch.tensor([[0.0, 0.0, -1.0], [2.0, 0.0, 1.0], [0.0, -1.5, 1.0], [0.5, 0.5, 1.0]], dtype=torch.float64)
    _, _, invalid = project(points, K_norm)
    assert invalid.tolist() == [True, True, True, False]


def test_unit_rays_have_unit_length_and_point_through_pixel():
    K_norm = normalize_intrinsics(K360, W360, H360)
    uv = ray_grid(4, 6, dtype=torch.float64)
    rays = camera_rays(uv, K_norm)
    assert torch.allclose(rays.norm(dim=-1), torch.ones(4, 6, dtype=torch.float64))
    uv_back, _, _ = project(rays * 9.0, K_norm)
    assert torch.allclose(uv_back, uv)


def test_rigid_inverse_and_named_directions():
    cam_to_world = make_rigid(rotation_y(0.3) @ rotation_x(-0.2), torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    world_to_cam = invert_rigid(cam_to_world)
    assert torch.allclose(world_to_cam @ cam_to_world, torch.eye(4, dtype=torch.float64))
    # The camera centre in world coordinates is the translation of cam_to_world.
    centre = transform_points(cam_to_world, torch.zeros(1, 3, dtype=torch.float64))
    assert torch.allclose(centre[0], torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    assert torch.allclose(transform_points(world_to_cam, centre), torch.zeros(1, 3, dtype=torch.float64))


def test_fisheye_virtual_rotation_tilts_down_for_negative_pitch():
    R = fisheye_virtual_rotation(0.0, -15.0)
    forward = R @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert forward[1].item() == pytest.approx(math.sin(math.radians(15.0)))  # y points down
    assert forward[2].item() == pytest.approx(math.cos(math.radians(15.0)))
