"""Bad input fails loudly with the path and what to do."""

import re

import numpy as np
import pytest

from datasets.calibration import DatasetError
from datasets.io import write_rgb
from datasets.kitti_raw import KittiRawDataset
from tests.datasets.kitti_raw.conftest import DATE, DRIVE_JPG


def make(tree, *lines, **kwargs):
    return KittiRawDataset(
        data_path=tree.root, pose_path=tree.pose_root, split_path=tree.split(*lines), image_size=(6, 20), **kwargs
    )


def raises_naming(path, *extra):
    return pytest.raises(DatasetError, match=re.escape(str(path)) + "".join(rf"[\s\S]*{e}" for e in extra))


def test_missing_root(tree):
    with raises_naming(tree.root / "nope", "synced\\+rectified"):
        KittiRawDataset(data_path=tree.root / "nope", pose_path=tree.pose_root)


def test_missing_date_and_drive(tree):
    with raises_naming(tree.root / "2011_09_28", "synced\\+rectified"):
        make(tree, "2011_09_28/2011_09_28_drive_0001_sync 0 l")
    with raises_naming(tree.root / DATE / f"{DATE}_drive_0005_sync", "synced\\+rectified"):
        make(tree, f"{DATE}/{DATE}_drive_0005_sync 0 l")


def test_missing_calibration(tree):
    (tree.root / DATE / "calib_velo_to_cam.txt").unlink()
    with raises_naming(tree.root / DATE / "calib_velo_to_cam.txt", "calibration zips"):
        make(tree, f"{DRIVE_JPG} 0 l")


def test_malformed_calibration_names_file_and_line(tree):
    path = tree.root / DATE / "calib_cam_to_cam.txt"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(":", "")
    path.write_text("\n".join(lines) + "\n")
    with raises_naming(f"{path}:4:"):
        make(tree, f"{DRIVE_JPG} 0 l")


def test_missing_pose_file_explains_why(tree):
    pose = tree.pose_root / f"{DRIVE_JPG}.txt"
    pose.unlink()
    with raises_naming(pose, "issue #20"):
        make(tree, f"{DRIVE_JPG} 0 l")


def test_pose_file_shorter_than_the_drive(tree):
    pose = tree.pose_root / f"{DRIVE_JPG}.txt"
    pose.write_text("\n".join(pose.read_text().splitlines()[:2]) + "\n")
    with raises_naming(pose, "2 poses"):
        make(tree, f"{DRIVE_JPG} 0 l")


def test_frame_beyond_the_drive(tree):
    with pytest.raises(DatasetError, match="frame 7 .* out of range"):
        make(tree, f"{DRIVE_JPG} 7 l")


def test_missing_right_images_are_found_by_the_constructor(tree):
    (tree.root / DRIVE_JPG / "image_03" / "data" / "0000000002.jpg").unlink()
    with raises_naming(tree.root / DRIVE_JPG / "image_03" / "data", "incomplete"):
        make(tree, f"{DRIVE_JPG} 0 l")
    make(tree, f"{DRIVE_JPG} 0 l", return_stereo=False)  # the right camera is not needed then


def test_missing_image_at_load_time(tree):
    dataset = make(tree, f"{DRIVE_JPG} 0 l")
    image = tree.root / DRIVE_JPG / "image_02" / "data" / "0000000001.jpg"
    image.unlink()
    with raises_naming(image, "synced\\+rectified"):
        dataset[0]


def test_missing_scan_at_load_time(tree):
    dataset = make(tree, f"{DRIVE_JPG} 0 l", return_depth=True)
    scan = tree.root / DRIVE_JPG / "velodyne_points" / "data" / "0000000000.bin"
    scan.unlink()
    with raises_naming(scan, "synced\\+rectified"):
        dataset[0]


def test_corrupt_image_is_named(tree):
    image = tree.root / DRIVE_JPG / "image_03" / "data" / "0000000000.jpg"
    image.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetError, match=r"Corrupt[\s\S]*" + re.escape(str(image))):
        make(tree, f"{DRIVE_JPG} 0 l")[0]


def test_image_with_the_wrong_resolution_is_named(tree):
    image = tree.root / DRIVE_JPG / "image_02" / "data" / "0000000000.jpg"
    write_rgb(image, np.zeros((6, 20, 3), dtype=np.uint8))
    with raises_naming(image, "original rectified resolution"):
        make(tree, f"{DRIVE_JPG} 0 l")[0]
