"""Lidar scans: frames, windows of consecutive scans, and the projected depth map."""

import numpy as np
import pytest

from datasets.kitti_360 import Kitti360Dataset
from tests.datasets.kitti_360.world import (
    CAM_TO_POSE,
    KNOWN_POINT,
    P_RECT,
    PERSP_H,
    R_RECT,
    SEQ_A,
    SEQ_B,
    imu_to_world,
    known_scan,
    rigid,
)

SIZE = (47, 176)


@pytest.fixture
def dataset(world):
    return Kitti360Dataset(world, image_size=SIZE, return_fisheye=False)


def rect0_to_world(frame: int) -> np.ndarray:
    return imu_to_world(frame) @ CAM_TO_POSE["00"] @ np.linalg.inv(rigid(R_RECT["00"], np.zeros(3)))


def test_scan_in_velodyne_and_in_rectified_cam0_frame(dataset):
    velodyne = dataset.load_lidar(SEQ_A, 4)
    expected = known_scan()
    expected[:, 3] += 4
    assert velodyne.dtype == np.float32 and velodyne.shape == (4, 4)
    assert np.allclose(velodyne, expected)
    cam0 = dataset.load_lidar(SEQ_A, 4, frame="cam0")
    assert cam0.dtype == np.float32 and cam0.shape == (4, 4)
    assert np.allclose(cam0[0, :3], KNOWN_POINT, atol=1e-4) and np.allclose(cam0[:, 3], expected[:, 3])
    T = dataset.calibration.velo_to_rect00.numpy()
    assert np.allclose(cam0[:, :3], velodyne[:, :3] @ T[:3, :3].T + T[:3, 3], atol=1e-5)


def test_window_returns_count_posed_scans_and_their_transforms(dataset):
    window = dataset.load_lidar_window(SEQ_A, 2, count=4)
    assert window.frame_ids == [2, 4, 5, 6]  # frame 3 has no pose
    assert len(window.scans) == 4 and window.velo_to_world.shape == window.velo_to_cam0.shape == (4, 4, 4)
    world_to_first = np.linalg.inv(rect0_to_world(2))
    for frame, scan, velo_to_world, velo_to_cam0 in zip(
        window.frame_ids, window.scans, window.velo_to_world, window.velo_to_cam0, strict=True
    ):
        assert scan[0, 3] == pytest.approx(0.1 + frame)
        point = np.append(scan[0, :3], 1.0)
        world_point = rect0_to_world(frame) @ np.append(KNOWN_POINT, 1.0)
        assert np.allclose(velo_to_world @ point, world_point, atol=1e-4)
        assert np.allclose(velo_to_cam0 @ point, world_to_first @ world_point, atol=1e-4)


def test_window_is_clamped_at_the_end_and_cached(dataset):
    window = dataset.load_lidar_window(SEQ_B, 3, count=20)
    assert len(window.scans) == 20 and window.frame_ids == [3] + [4] * 19
    again = dataset.load_lidar_window(SEQ_B, 3, count=20)
    assert again.scans[0] is window.scans[0]  # decoded once, served from the LRU cache
    assert not window.scans[0].flags.writeable


def test_depth_map_puts_the_known_point_at_its_pixel(world):
    sample = Kitti360Dataset(world, image_size=SIZE, return_fisheye=False, return_depth=True)[0]
    assert sample.depth.shape == (1, *SIZE)
    fx, fy, cx, cy = P_RECT[0, 0], P_RECT[1, 1], P_RECT[0, 2], P_RECT[1, 2]
    x, y, z = KNOWN_POINT
    u, v = round(fx * x / z + cx), round(fy * y / z + cy)  # SIZE is the calibrated size
    # The point 1.5x further on the same ray lands on the same pixel: the nearest one is kept.
    assert sample.depth[0, v, u].item() == pytest.approx(10.0, abs=1e-4)
    far_u, far_v = round(fx * 3.0 / 30.0 + cx), round(fy * -1.0 / 30.0 + cy)
    assert sample.depth[0, far_v, far_u].item() == pytest.approx(30.0, abs=1e-4)
    assert int((sample.depth > 0).sum()) == 2  # the point behind the camera is dropped


def test_depth_of_a_smaller_image_and_of_the_right_camera(world):
    small = Kitti360Dataset(world, image_size=(24, 88), return_fisheye=False)
    depth = small.depth(SEQ_A, 0)
    assert depth.shape == (1, 24, 88)
    fx, fy, cx, cy = P_RECT[0, 0] / 2, P_RECT[1, 1] * 24 / PERSP_H, P_RECT[0, 2] / 2, P_RECT[1, 2] * 24 / PERSP_H
    x, y, z = KNOWN_POINT
    assert depth[0, round(fy * y / z + cy), round(fx * x / z + cx)] == pytest.approx(10.0, abs=1e-4)
    # The right camera sees the points elsewhere.
    right = small.depth(SEQ_A, 0, camera="01")
    assert int((right > 0).sum()) >= 2 and not np.array_equal(right, depth)
