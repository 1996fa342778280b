"""Velodyne depth ground truth: the devkit pixel convention, nearest point wins, Eigen filter, Garg crop."""

import numpy as np
import pytest

from datasets.kitti_raw.depth import eigen_depth, garg_crop_mask, velodyne_depth_map

# Velodyne frame treated as a camera frame here: depth = z, u = 10 x / z + 7.3, v = 10 y / z + 4.2.
P = np.array([[10.0, 0.0, 7.3, 0.0], [0.0, 10.0, 4.2, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_point_lands_on_the_devkit_pixel_with_its_depth():
    depth = velodyne_depth_map(np.array([[1.0, 0.5, 5.0]]), P, 10, 12)
    # u = 2 + 7.3 = 9.3 -> round 9 - 1 = col 8; v = 1 + 4.2 = 5.2 -> round 5 - 1 = row 4
    assert depth.dtype == np.float32 and depth.shape == (10, 12)
    assert depth[4, 8] == pytest.approx(5.0)
    assert np.count_nonzero(depth) == 1


def test_nearest_point_wins_on_duplicate_pixels_in_any_order():
    points = np.array([[2.0, 1.0, 10.0, 0.3], [1.0, 0.5, 5.0, 0.3], [1.2, 0.6, 6.0, 0.3]])
    for order in ([0, 1, 2], [1, 2, 0], [2, 0, 1]):
        depth = velodyne_depth_map(points[order], P, 10, 12)
        assert depth[4, 8] == pytest.approx(5.0) and np.count_nonzero(depth) == 1


def test_points_behind_the_scanner_and_outside_the_image_are_dropped():
    points = np.array(
        [
            [-1.0, 0.5, 5.0],  # velodyne x < 0: dropped although it would project to col 6
            [1.0, 0.5, -5.0],  # negative depth
            [5.0, 0.0, 5.0],  # u = 17.3 -> col 16 >= 12
            [-0.7, 0.0, 10.0],  # x < 0 again, u = 6.6 -> col 6
            [0.0, -0.42, 1.0],  # v = 0.0 -> round 0 - 1 = row -1: outside (the devkit -1 shift)
        ]
    )
    assert np.count_nonzero(velodyne_depth_map(points, P, 10, 12)) == 0


def test_garg_crop_bounds_for_the_kitti_size():
    mask = garg_crop_mask(375, 1242)
    rows, cols = np.nonzero(mask)
    # int(0.40810811 * 375) = 153, int(0.99189189 * 375) = 371,
    # int(0.03594771 * 1242) = 44, int(0.96405229 * 1242) = 1197
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_eigen_depth_keeps_range_and_crop():
    depth = np.zeros((375, 1242), dtype=np.float32)
    depth[200, 600] = 12.0  # kept
    depth[201, 600] = 80.0  # too far
    depth[202, 600] = 5e-4  # too near
    depth[100, 600] = 7.0  # above the crop
    depth[200, 10] = 7.0  # left of the crop
    filtered = eigen_depth(depth)
    assert filtered[200, 600] == 12.0 and np.count_nonzero(filtered) == 1
