"""The polar-bin lidar reference on tiny hand-made scans."""

import math

import pytest
import torch

from utils.occupancy.grid import QueryGrid
from utils.occupancy.lidar import lidar_reference, occupied_by_scans, polar_surfaces, surface_distance


def _xy(degrees_and_dists):
    return torch.tensor(
        [[d * math.cos(math.radians(a)), d * math.sin(math.radians(a))] for a, d in degrees_and_dists],
        dtype=torch.float64,
    )


def _scan():
    # bin i holds azimuths in [-180 + i, -179 + i) degrees
    return _xy([(0.5, 10.0), (0.7, 8.0), (10.5, 5.0), (-170.5, 7.0), (-170.2, 2.0)])


def test_binning_min_and_empty_bin_fill():
    s = polar_surfaces([_scan()])
    d = s.dists[0, 1:-1]  # without the wrap-around padding
    assert d[0:9].tolist() == pytest.approx([7.0] * 9)  # before the first filled bin: the lowest-azimuth point
    assert d[9].item() == pytest.approx(2.0)  # bin 9 (-171..-170 deg): min(7, 2)
    assert d[10:180].tolist() == pytest.approx([2.0] * 170)  # empty: previous bin's value
    assert d[180].item() == pytest.approx(8.0)  # bin 180 (0..1 deg): min(10, 8)
    assert d[190].item() == pytest.approx(5.0) and d[359].item() == pytest.approx(5.0)
    assert s.angles[0, 1].item() == pytest.approx(math.radians(-179.5))  # bin centres


def test_wrap_around_padding():
    s = polar_surfaces([_scan()])
    assert s.angles.shape == (1, 362)
    assert s.angles[0, 0].item() == pytest.approx(math.radians(179.5) - 2 * math.pi)
    assert s.dists[0, 0].item() == pytest.approx(5.0)  # the last bin
    assert s.angles[0, -1].item() == pytest.approx(math.radians(-179.5) + 2 * math.pi)
    assert s.dists[0, -1].item() == pytest.approx(7.0)  # the first bin


def test_linear_interpolation_between_bin_centres():
    s = polar_surfaces([_scan()])
    queries = torch.tensor([[math.radians(a) for a in (10.0, 0.0, 0.25, 179.9, -179.9)]], dtype=torch.float64)
    d = surface_distance(s, queries)[0]
    # 10.0: halfway between 9.5 deg (8) and 10.5 deg (5) -> 6.5
    # 0.0: halfway between -0.5 deg (2) and 0.5 deg (8) -> 5
    # 0.25: 3/4 of the way from 2 to 8 -> 6.5
    # 179.9: from 179.5 deg (5) towards the padded 180.5 deg (7), t = 0.4 -> 5.8
    # -179.9: from the padded -180.5 deg (5) towards -179.5 deg (7), t = 0.6 -> 6.2
    assert d.tolist() == pytest.approx([6.5, 5.0, 6.5, 5.8, 6.2], abs=1e-9)


def _wall(distance):
    return _xy([(a + 0.5, distance) for a in range(-180, 180)])


def test_three_metre_rule_and_homogeneous_norm_quirk():
    s = polar_surfaces([_wall(10.0)])
    points = torch.tensor(
        [[9.9, 0.0, 0.0], [9.96, 0.0, 0.0], [2.9, 0.0, 0.0], [2.8, 0.0, 0.0], [9.9, 0.0, 1.5]], dtype=torch.float64
    )
    occ = occupied_by_scans(points, s, torch.eye(4, dtype=torch.float64)[None])[0]
    # dist = sqrt(x^2 + y^2 + z^2 + 1):
    # 9.9  -> sqrt(99.01) = 9.950 < 10: free
    # 9.96 -> sqrt(100.2016) = 10.010 > 10: occupied (the plain norm 9.96 would be free)
    # 2.9  -> sqrt(9.41) = 3.068, not < 3 and < 10: free (the plain norm 2.9 would be occupied)
    # 2.8  -> sqrt(8.84) = 2.973 < 3: occupied
    # (9.9, 0, 1.5) -> sqrt(101.26) = 10.063 > 10: occupied (3D query against horizontal scan distance)
    assert occ.tolist() == [False, True, False, True, True]


@pytest.mark.parametrize(
    ("num_scans", "num_near", "expected"), [(20, 17, False), (20, 18, True), (19, 16, False), (19, 17, True)]
)
def test_vote_needs_all_but_two_scans(num_scans, num_near, expected):
    # scans with a wall at 4 m say "occupied" for a point at horizontal 5 m; walls at 10 m say "free"
    walls = [10.0] + [4.0] * num_near + [10.0] * (num_scans - num_near - 1)
    scans = [torch.cat([_wall(d), torch.zeros(360, 1, dtype=torch.float64)], dim=1) for d in walls]
    T = torch.eye(4, dtype=torch.float64).expand(num_scans, 4, 4)
    ref = lidar_reference(torch.tensor([[5.0, 0.0, 0.0]]), scans, T, (0.0, 0.75), far_dist=0.0)
    # occ_score = (1 + num_near) / n > (n - 2) / n  <=>  num_near >= n - 2
    assert ref.occupied.item() is expected
    assert ref.visible.item() is True  # the first scan sees the 10 m wall behind the point
    assert ref.num_scans == num_scans


def test_height_band_and_far_points_select_scan_points():
    # levelled frame == velodyne frame here: a point at y = 2 (outside [0, 0.75]) and closer than
    # sqrt(416) m is dropped, so its bin falls back to the neighbouring values.
    scan = torch.tensor([[10.0, 0.5, 0.0], [3.0, 2.0, 0.0], [-30.0, 0.0, 0.0]], dtype=torch.float64)
    grid = QueryGrid()
    ref = lidar_reference(
        torch.tensor([[5.0, 3.3, 0.0]]), [scan], torch.eye(4, dtype=torch.float64)[None], grid.y_range, grid.far_dist
    )
    # the 2 kept points fill every bin with 10.0 (y = 0.5 point) or 30 (far point); the query is free
    assert ref.visible.item() is True
