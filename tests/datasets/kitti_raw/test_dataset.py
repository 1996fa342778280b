"""KittiRawDataset on a tiny hand-built tree: view order, poses, intrinsics, images, depth, jitter."""

import numpy as np
import pytest
import torch

from datasets.augmentation import ColorJitterParams
from datasets.kitti_raw import KittiRawDataset
from datasets.sample import collate
from tests.datasets.kitti_raw.conftest import (
    CX,
    CY,
    DRIVE_JPG,
    DRIVE_PNG,
    FX,
    HEIGHT,
    NUM_FRAMES,
    WIDTH,
    X_LEFT,
    X_RIGHT,
    pose,
    translation_x,
    view_color,
    write_drive,
)

SIZE = (6, 20)


def make(tree, *lines, **kwargs):
    split = tree.split(*lines) if lines else None
    return KittiRawDataset(data_path=tree.root, pose_path=tree.pose_root, split_path=split, image_size=SIZE, **kwargs)


def expected_cam_to_world(is_right: bool, frame: int) -> torch.Tensor:
    return torch.from_numpy(pose(frame) @ translation_x(X_RIGHT if is_right else X_LEFT)).float()


def assert_views(sample, layout):
    """``layout``: (is_right, frame) per view; checks pose and the view's uniform colour."""
    assert sample.images.shape == (len(layout), 3, *SIZE)
    for v, (is_right, frame) in enumerate(layout):
        assert torch.allclose(sample.cam_to_world[v], expected_cam_to_world(is_right, frame), atol=1e-6)
        color = (sample.images[v].mean(dim=(1, 2)) + 1) / 2 * 255
        assert torch.allclose(color, torch.tensor(view_color(is_right, frame), dtype=torch.float32), atol=3)


def test_left_line_gives_left_then_right_views(tree):
    sample = make(tree, f"{DRIVE_JPG} 1 l")[0]
    assert_views(sample, [(False, 1), (False, 2), (True, 1), (True, 2)])
    assert (sample.sequence, sample.frame_id, sample.is_right, sample.index) == (DRIVE_JPG, 1, False, 0)
    assert sample.images.dtype == torch.float32 and sample.cam_to_world.dtype == torch.float32
    assert sample.images.min() >= -1 and sample.images.max() <= 1
    assert sample.depth is None


def test_right_line_swaps_the_roles(tree):
    sample = make(tree, f"{DRIVE_JPG} 0 l", f"{DRIVE_JPG} 0 r")[1]
    assert sample.is_right and sample.index == 1
    assert_views(sample, [(True, 0), (True, 1), (False, 0), (False, 1)])


def test_ids_are_clamped_at_the_end_of_the_drive(tree):
    last = NUM_FRAMES - 1
    sample = make(tree, f"{DRIVE_JPG} {last} l", frame_count=3)[0]
    assert_views(sample, [(False, last)] * 3 + [(True, last)] * 3)


def test_stereo_off(tree):
    sample = make(tree, f"{DRIVE_JPG} 0 r", return_stereo=False)[0]
    assert_views(sample, [(True, 0), (True, 1)])


def test_png_images_are_accepted(tree):
    sample = make(tree, f"{DRIVE_PNG} 0 l")[0]
    assert_views(sample, [(False, 0), (False, 1), (True, 0), (True, 1)])


def test_normalised_intrinsics_use_the_original_size(tree):
    sample = make(tree, f"{DRIVE_JPG} 0 l")[0]
    K = torch.tensor([[2 * FX / WIDTH, 0, 2 * CX / WIDTH - 1], [0, 2 * FX / HEIGHT, 2 * CY / HEIGHT - 1], [0, 0, 1]])
    assert sample.K_norm.shape == (4, 3, 3) and sample.K_norm.dtype == torch.float32
    assert torch.allclose(sample.K_norm, K.expand(4, 3, 3), atol=1e-6)


def test_depth_ground_truth(tree):
    sample = make(tree, f"{DRIVE_JPG} 0 l", return_depth=True)[0]
    depth = sample.depth
    assert depth.shape == (1, HEIGHT, WIDTH) and depth.dtype == torch.float32
    # The 10 m point at col 18, row 4 (the 20 m point on the same pixel loses); the row-1 point is outside
    # the Garg crop and the 100 m point beyond 80 m, so both are zero, as is the point behind the scanner.
    assert depth[0, 4, 18] == pytest.approx(10.0)
    assert torch.count_nonzero(depth) == 1


def test_depth_of_a_right_anchored_sample_belongs_to_the_right_camera(tree):
    depth = make(tree, f"{DRIVE_JPG} 0 r", return_depth=True)[0].depth
    # image_03: u = 19.3 - FX * X_RIGHT / z: the 10 m point at 18.34 -> col 17, the 20 m one at 18.82 -> col 18
    assert depth[0, 4, 17] == pytest.approx(10.0) and depth[0, 4, 18] == pytest.approx(20.0)
    assert torch.count_nonzero(depth) == 2


def test_colour_jitter_is_drawn_once_and_applied_to_every_view(tree, monkeypatch):
    drawn = []
    original = ColorJitterParams.sample

    def recording_sample(*args, **kwargs):
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(ColorJitterParams, "sample", staticmethod(recording_sample))
    torch.manual_seed(0)
    jittered = make(tree, f"{DRIVE_JPG} 0 l", color_aug=True)[0].images
    plain = make(tree, f"{DRIVE_JPG} 0 l")[0].images
    assert len(drawn) == 1
    assert not torch.allclose(jittered, plain, atol=1e-3)
    for v in range(plain.shape[0]):
        expected = drawn[0].apply((plain[v] + 1) / 2) * 2 - 1
        assert torch.allclose(jittered[v], expected, atol=1e-5)


def test_no_split_means_every_frame_of_every_posed_drive(tree):
    write_drive(tree, "2011_09_26/2011_09_26_drive_0117_sync", ".jpg", with_poses=False)  # campus-like: no poses
    dataset = make(tree)
    assert len(dataset) == 2 * NUM_FRAMES
    assert {e.sequence for e in dataset.entries} == {DRIVE_JPG, DRIVE_PNG}
    assert not any(e.is_right for e in dataset.entries)


def test_samples_collate(tree):
    dataset = make(tree, f"{DRIVE_JPG} 0 l", f"{DRIVE_PNG} 2 r", return_depth=True)
    batch = collate([dataset[0], dataset[1]])
    assert batch.images.shape == (2, 4, 3, *SIZE) and batch.depth.shape == (2, 1, HEIGHT, WIDTH)
    assert batch.is_right == [False, True]
    assert np.isfinite(batch.cam_to_world.numpy()).all()
