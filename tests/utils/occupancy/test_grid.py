"""The levelled frame's direction, the query grid and the bird's-eye profile."""

import math

import pytest
import torch

from utils.occupancy.grid import (
    PROFILE_SIGMA_SUM,
    QueryGrid,
    bird_eye_profile,
    cam_to_level,
    level_to_cam,
    profile_grid,
    render_profile,
    transform,
)


def test_camera_pitched_down_looks_down_in_the_levelled_frame():
    # The optical axis of a camera inclined 5 degrees down points below the horizon: +y (down), +z.
    axis = transform(cam_to_level(), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))[0]
    assert axis.tolist() == pytest.approx([0.0, math.sin(math.radians(5)), math.cos(math.radians(5))], abs=1e-6)


def test_horizon_is_above_the_image_centre_and_road_is_level():
    # A far point at camera height in the levelled frame appears above the optical axis (y < 0 in cam0).
    far = transform(level_to_cam(), torch.tensor([[0.0, 0.0, 1000.0]], dtype=torch.float64))[0]
    assert far[1] < -80.0
    # A road 1.6 m below the camera, seen by the inclined camera, has constant levelled y = 1.6.
    s, c = math.sin(math.radians(5)), math.cos(math.radians(5))
    road_level = torch.tensor([[x, 1.6, z] for x in (-3.0, 0.0, 5.0) for z in (4.0, 12.0, 30.0)], dtype=torch.float64)
    # camera -> road rotation built from the geometry: columns = camera x, y, z axes in the road frame
    cam_to_road = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]], dtype=torch.float64)
    road_cam = road_level @ cam_to_road  # (R^T p) as rows
    back = transform(cam_to_level(), road_cam)
    assert back[:, 1].tolist() == pytest.approx([1.6] * 9, abs=1e-5)  # 7-digit official constants
    assert torch.allclose(cam_to_level() @ level_to_cam(), torch.eye(4, dtype=torch.float64))


def test_the_official_query_grid_shape_and_values():
    q = QueryGrid().points()
    assert q.shape == (12800, 3)
    assert q[0].tolist() == pytest.approx([-4.0, 0.375, 20.0])
    assert q[1].tolist() == pytest.approx([-4.0 + 8 / 79, 0.375, 20.0])  # x runs fastest
    assert q[80].tolist() == pytest.approx([-4.0, 0.375, 20.0 - 16 / 159])  # then z, far to near
    assert q[-1].tolist() == pytest.approx([4.0, 0.375, 4.0])
    assert torch.all(q[:, 1] == 0.375)
    volume = QueryGrid().volume(3)
    assert volume.shape == (3 * 12800, 3)
    assert volume[:, 1].unique().tolist() == pytest.approx([0.0, 0.375, 0.75])


def test_bird_eye_profile():
    # one column (Z = X = 1) of 4 slices; invalid slices count as sigma 1
    sigma = torch.tensor([3.0, 4.0, 2.0, 0.0]).view(4, 1, 1)
    invalid = torch.tensor([False, False, False, True]).view(4, 1, 1)
    # cumulative sums 3, 7, 9, 10 -> two of four slices <= 8
    assert bird_eye_profile(sigma, invalid).item() == 0.5


@pytest.mark.parametrize("block", [1, 3, 8, 64])
def test_render_profile_stops_columns_past_the_threshold_and_answers_the_same(block):
    """The early stop per column changes which points are asked, not the profile: it equals bird_eye_profile of
    every point's density (exactly), on a field with dense, sparse and invalid parts; columns that pass the
    threshold near the top are not asked for their lower slices."""
    asked = []

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # a pure function of each point
        asked.append(len(points))
        x, y, z = points.double().unbind(-1)
        sigma = (torch.sin(1.7 * x) * torch.cos(0.9 * z) * 3.0 + 1.0 + 2.0 * y).clamp_min(0.0).float()
        return sigma, (x > 7.5) & (y > 0.5)

    res = (40, 30, 16)
    T = level_to_cam()
    profile = render_profile(field, T, res, block=block)
    grid = profile_grid(res=res)  # (Y, Z, X, 3)
    sigma, invalid = field(transform(T, grid.reshape(-1, 3)))
    sigma_sum = PROFILE_SIGMA_SUM * (res[2] - 1) / 63
    expected = bird_eye_profile(sigma.reshape(grid.shape[:3]), invalid.reshape(grid.shape[:3]), sigma_sum)
    assert profile.shape == (30, 40) and torch.equal(profile, expected)
    assert 0.1 < (expected == 1).float().mean() < 0.9 and (expected < 0.5).any()  # both kinds of columns
    queried = sum(asked[:-1])  # the last call is the reference's, over the whole grid
    if block < res[2]:
        assert queried < grid[..., 0].numel()  # saturated columns were not asked for their lower slices
    else:
        assert queried == grid[..., 0].numel()


def test_the_configurable_grid_defaults_to_the_official_one():
    grid = QueryGrid()
    assert torch.equal(grid.cam_to_level(), cam_to_level())  # the 7-digit official constants
    assert grid.far_dist == pytest.approx((20.0**2 + 4.0**2) ** 0.5)  # official: ||(z_max, x_min)||


def test_a_level_wide_grid():
    from utils.occupancy.grid import QueryGrid

    grid = QueryGrid(x_range=(-10.0, 10.0), x_res=200, inclination_deg=0.0)
    points = grid.points()
    assert points.shape == (160 * 200, 3)
    assert points[:, 0].min() == -10.0 and points[:, 0].max() == 10.0 and torch.all(points[:, 1] == 0.375)
    assert torch.equal(grid.level_to_cam(), torch.eye(4, dtype=torch.float64))
    assert grid.far_dist == pytest.approx((20.0**2 + 10.0**2) ** 0.5)
    tilted = QueryGrid(inclination_deg=10.0).cam_to_level()
    assert tilted[1, 2].item() == pytest.approx(0.17364817766) and tilted[2, 1].item() == pytest.approx(-0.17364817766)
