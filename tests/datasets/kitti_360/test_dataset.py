"""Kitti360Dataset on the tiny hand-written world: view order, poses, intrinsics, images, frames."""

import logging

import numpy as np
import pytest
import torch

from datasets.kitti_360 import Kitti360Dataset
from datasets.sample import collate
from tests.datasets.kitti_360.world import (
    CAM_TO_POSE,
    P_RECT,
    PERSP_H,
    PERSP_W,
    R_RECT,
    SEQ_A,
    SEQ_B,
    imu_to_world,
    rigid,
    rot_x,
    rot_y,
    view_color,
    write_world,
)

SIZE = (24, 88)


def expected_cam_to_world(camera: str, frame: int, yaw=0.0, pitch=-15.0) -> np.ndarray:
    """Composition of REFERENCE 6.1, written independently of the loader."""
    if camera in ("00", "01"):
        cam = CAM_TO_POSE[camera] @ np.linalg.inv(rigid(R_RECT[camera], np.zeros(3)))
    else:
        yaw = yaw if camera == "02" else -yaw
        virtual = rot_y(np.radians(yaw)) @ rot_x(np.radians(pitch))
        cam = CAM_TO_POSE[camera] @ rigid(virtual, np.zeros(3))
    return imu_to_world(frame) @ cam


def decode_views(images: torch.Tensor) -> list[tuple[str, int]]:
    """(camera, frame) from the uniform colours of world.py."""
    colors = ((images.mean(dim=(2, 3)) + 1.0) / 2.0 * 255.0).round().int()
    return [(f"{(int(r) - 30) // 50:02d}", (int(g) - 10) // 20) for r, g, _ in colors]


def write_split(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def sample_for(ds, sequence, frame, is_right=False):
    for i, (s, index, right) in enumerate(ds._datapoints):
        if s == sequence and int(ds._frame_ids[s][index]) == frame and right == is_right:
            return ds[i]
    raise AssertionError("no such sample")


def check_views(sample, expected):
    assert decode_views(sample.images) == expected
    assert sample.extras["view_frame_ids"].tolist() == [f for _, f in expected]
    for v, (camera, frame) in enumerate(expected):
        want = torch.from_numpy(expected_cam_to_world(camera, frame)).float()
        assert torch.allclose(sample.cam_to_world[v], want, atol=1e-5), (v, camera, frame)


def test_left_sample_view_order_poses_and_frames_skip_the_pose_gap(world):
    ds = Kitti360Dataset(world, image_size=SIZE, fisheye_offset=2)
    sample = sample_for(ds, SEQ_A, 2)
    # Posed frames of SEQ_A are 0 1 2 4 5 6 7: "t+1" of frame 2 is frame 4.
    expected = [("00", 2), ("00", 4), ("01", 2), ("01", 4), ("02", 5), ("02", 6), ("03", 5), ("03", 6)]
    check_views(sample, expected)
    assert (sample.sequence, sample.frame_id, sample.is_right) == (SEQ_A, 2, False)
    assert sample.images.shape == (8, 3, *SIZE) and sample.images.dtype == torch.float32
    assert sample.images.min() >= -1.0 and sample.images.max() <= 1.0
    assert sample.cam_to_world.dtype == torch.float32 and sample.depth is None


def test_right_sample_swaps_left_and_right(world, tmp_path):
    split = write_split(tmp_path / "split.txt", [f"{SEQ_A} 0000000002 r", f"{SEQ_A} 0000000002 l"])
    ds = Kitti360Dataset(world, split_path=split, image_size=SIZE, fisheye_offset=2)
    assert len(ds) == 2
    right, left = ds[0], ds[1]
    assert right.is_right and not left.is_right and right.index == 0
    check_views(right, [("01", 2), ("01", 4), ("00", 2), ("00", 4), ("03", 5), ("03", 6), ("02", 5), ("02", 6)])
    assert torch.equal(right.images[:2], left.images[2:4])


def test_intrinsics_are_p_rect_00_normalised_with_the_calibrated_size(world):
    sample = Kitti360Dataset(world, image_size=SIZE)[0]
    K = torch.tensor(
        [
            [2 * P_RECT[0, 0] / PERSP_W, 0.0, 2 * P_RECT[0, 2] / PERSP_W - 1],
            [0.0, 2 * P_RECT[1, 1] / PERSP_H, 2 * P_RECT[1, 2] / PERSP_H - 1],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float32,
    )
    assert sample.K_norm.shape == (8, 3, 3)
    assert torch.allclose(sample.K_norm, K.expand(8, 3, 3), atol=1e-6)


def test_images_resized_to_image_size_in_minus_one_one(world):
    sample = Kitti360Dataset(world, image_size=(47, 176), return_fisheye=False)[0]
    assert sample.images.shape == (4, 3, 47, 176)
    want = torch.tensor(view_color("00", 0), dtype=torch.float32) / 255 * 2 - 1
    assert torch.allclose(sample.images[0], want.view(3, 1, 1).expand(3, 47, 176), atol=1e-6)


def test_unposed_frames_are_skipped_counted_and_logged(world, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="datasets.kitti_360"):
        ds = Kitti360Dataset(world, image_size=SIZE)
    assert len(ds) == 7 + 5
    assert 3 not in [int(ds._frame_ids[s][i]) for s, i, _ in ds._datapoints if s == SEQ_A]
    assert f"KITTI-360 {SEQ_A}: 7 posed frames; 1 of 8 image_00 frames have no pose" in caplog.text
    assert f"KITTI-360 {SEQ_B}: 5 posed frames; 0 of 5" in caplog.text
    split = write_split(tmp_path / "s.txt", [f"{SEQ_A} 0000000003 l", f"{SEQ_A} 0000000004 l", f"{SEQ_B} 0000000001 r"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datasets.kitti_360"):
        ds = Kitti360Dataset(world, split_path=split, image_size=SIZE)
    assert len(ds) == 2
    assert f"KITTI-360 {SEQ_A}: skipped 1 split lines whose frame has no pose" in caplog.text


def test_frame_ids_are_clamped_at_the_sequence_end(world):
    ds = Kitti360Dataset(world, image_size=SIZE)  # fisheye_offset 10 > sequence length
    check_views(
        sample_for(ds, SEQ_B, 4), [("00", 4), ("00", 4), ("01", 4), ("01", 4)] + [("02", 4)] * 2 + [("03", 4)] * 2
    )
    check_views(
        sample_for(ds, SEQ_A, 0), [("00", 0), ("00", 1), ("01", 0), ("01", 1)] + [("02", 7)] * 2 + [("03", 7)] * 2
    )


@pytest.mark.parametrize(
    ("stereo", "fisheye", "is_right", "cameras"),
    [
        (False, False, False, ["00", "00"]),
        (False, True, False, ["00", "00", "02", "02"]),
        (False, True, True, ["01", "01", "03", "03"]),
        (True, False, True, ["01", "01", "00", "00"]),
    ],
)
def test_stereo_and_fisheye_can_be_switched_off(world, tmp_path, stereo, fisheye, is_right, cameras):
    split = write_split(tmp_path / "s.txt", [f"{SEQ_B} 0000000001 {'r' if is_right else 'l'}"])
    ds = Kitti360Dataset(
        world, split_path=split, image_size=SIZE, return_stereo=stereo, return_fisheye=fisheye, fisheye_offset=2
    )
    sample = ds[0]
    assert [c for c, _ in decode_views(sample.images)] == cameras
    assert sample.K_norm.shape[0] == sample.cam_to_world.shape[0] == len(cameras)


def test_frame_count_one_and_three(world):
    ds = Kitti360Dataset(world, image_size=SIZE, frame_count=3, return_fisheye=False)
    assert sample_for(ds, SEQ_A, 1).extras["view_frame_ids"].tolist() == [1, 2, 4, 1, 2, 4]
    ds = Kitti360Dataset(world, image_size=SIZE, frame_count=1)
    assert sample_for(ds, SEQ_A, 1).extras["view_frame_ids"].tolist() == [1, 1, 7, 7]


def test_color_jitter_draws_one_set_of_parameters_per_sample(tmp_path):
    root = write_world(tmp_path / "grey", grey=128, scans=False)
    ds = Kitti360Dataset(root, image_size=SIZE, color_aug=True)
    plain = Kitti360Dataset(root, image_size=SIZE)[0].images
    changed = 0
    for seed in range(3):
        torch.manual_seed(seed)
        images = ds[0].images  # (V, 3, H, W)
        # Uniform grey stays uniform, and every view gets the same change.
        assert (images - images[:1, :1, :1, :1]).abs().max() < 1e-5
        changed += int((images - plain).abs().max() > 1e-3)
    assert changed >= 2


def test_samples_collate_into_a_batch(world):
    ds = Kitti360Dataset(world, image_size=SIZE)
    batch = collate([ds[0], ds[5]])
    assert batch.images.shape == (2, 8, 3, *SIZE) and batch.cam_to_world.shape == (2, 8, 4, 4)
    assert batch.sequence == [SEQ_A, SEQ_A] and batch.index == [0, 5]
