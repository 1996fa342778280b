"""Calibration values, and bad input: every error names the file (and line) and what to do."""

import numpy as np
import pytest

from datasets.calibration import DatasetError
from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.calibration import load_calibration, read_fisheye_yaml
from tests.datasets.kitti_360.world import CAM00_TO_VELO, FISHEYE, R_RECT, SEQ_A, SEQ_B, rigid

SIZE = (24, 88)


def test_calibration_values_and_derived_transforms(world):
    calib = load_calibration(world / "calibration", (10.0, -15.0))
    assert calib.perspective_size == (47, 176)
    assert calib.fisheye["03"].width == 100 and calib.fisheye["03"].xi == pytest.approx(FISHEYE["03"]["xi"])
    assert calib.fisheye["02"].p2 == pytest.approx(FISHEYE["02"]["p2"])
    velo_to_rect00 = rigid(R_RECT["00"], np.zeros(3)) @ np.linalg.inv(CAM00_TO_VELO)
    assert np.allclose(calib.velo_to_rect00.numpy(), velo_to_rect00, atol=1e-12)
    assert np.allclose(calib.velo_to_pose.numpy(), calib.cam_to_pose["00"].numpy() @ velo_to_rect00, atol=1e-12)
    # The right fisheye's virtual view turns the other way.
    R02, R03 = calib.fisheye_rotation["02"].numpy(), calib.fisheye_rotation["03"].numpy()
    yaw_02 = np.degrees(np.arctan2(R02[0, 2], R02[2, 2]))
    yaw_03 = np.degrees(np.arctan2(R03[0, 2], R03[2, 2]))
    assert yaw_02 == pytest.approx(10.0) and yaw_03 == pytest.approx(-10.0)


def test_missing_root_calibration_and_poses(world, tmp_path):
    with pytest.raises(DatasetError, match="Missing directory: .*nowhere"):
        Kitti360Dataset(tmp_path / "nowhere")
    (world / "calibration" / "image_03.yaml").unlink()
    with pytest.raises(DatasetError, match=r"image_03\.yaml\nDownload the calibration"):
        Kitti360Dataset(world)
    (world / "calibration").rename(world / "calib_moved")
    with pytest.raises(DatasetError, match="Missing directory: .*calibration"):
        Kitti360Dataset(world)


def test_missing_pose_file_and_sequence_folder(world, tmp_path):
    (world / "data_poses" / SEQ_B / "poses.txt").unlink()
    with pytest.raises(DatasetError, match=f"{SEQ_B}/poses.txt\nDownload data_poses"):
        Kitti360Dataset(world)
    split = tmp_path / "split.txt"
    split.write_text("2013_05_28_drive_0009_sync 0000000001 l\n")
    with pytest.raises(DatasetError, match="drive_0009_sync\nDownload data_2d_raw"):
        Kitti360Dataset(world, split_path=split)


def test_malformed_calibration_line_names_file_and_line(world):
    path = world / "calibration" / "perspective.txt"
    lines = path.read_text().splitlines()
    lines[3] = "S_rect_00 176 47"  # colon missing
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"perspective\.txt:4: expected 'key: values'"):
        Kitti360Dataset(world)


def test_calib_cam_to_velo_and_pose_rows_are_checked(world):
    (world / "calibration" / "calib_cam_to_velo.txt").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match=r"calib_cam_to_velo\.txt:1: expected 12 numbers"):
        Kitti360Dataset(world)


def test_malformed_yaml_and_missing_key(world):
    path = world / "calibration" / "image_02.yaml"
    text = path.read_text()
    path.write_text(text.replace("   k2:", "  k2: ["))
    with pytest.raises(DatasetError, match=r"image_02\.yaml:\d+: malformed YAML"):
        read_fisheye_yaml(path)
    path.write_text(text.replace("   xi:", "   chi:"))
    with pytest.raises(DatasetError, match=r"image_02\.yaml: key 'mirror_parameters\.xi' not found"):
        read_fisheye_yaml(path)


def test_missing_and_corrupt_images_and_scans_fail_per_item(world):
    ds = Kitti360Dataset(world, image_size=SIZE, preprocessed=False)
    fisheye = world / "data_2d_raw" / SEQ_A / "image_02" / "data_rgb" / "0000000007.png"
    fisheye.unlink()
    with pytest.raises(DatasetError, match=r"image_02/data_rgb/0000000007\.png\nDownload data_2d_raw"):
        ds[0]
    left = world / "data_2d_raw" / SEQ_A / "image_00" / "data_rect" / "0000000001.png"
    left.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match=r"Corrupt or unreadable image: .*image_00/data_rect/0000000001\.png"):
        ds[0]
    (world / "data_3d_raw" / SEQ_B / "velodyne_points" / "data" / "0000000002.bin").unlink()
    with pytest.raises(DatasetError, match=r"0000000002\.bin\nDownload data_3d_raw"):
        ds.load_lidar(SEQ_B, 2)
    with pytest.raises(DatasetError, match="frame 3 has no pose"):
        ds.load_lidar_window(SEQ_A, 3)


def test_fisheye_of_the_wrong_size_is_an_error(world):
    path = world / "calibration" / "image_03.yaml"
    path.write_text(path.read_text().replace("image_width: 100", "image_width: 120"))
    ds = Kitti360Dataset(world, image_size=SIZE)
    with pytest.raises(
        DatasetError,
        match=r"image_03/data_rgb/0000000007\.png: image is 100x100 but calibration/image_03\.yaml says 120x100",
    ):
        ds[0]


def test_perspective_of_the_wrong_size_is_an_error(world):
    path = world / "calibration" / "perspective.txt"
    path.write_text(path.read_text().replace("S_rect_00: 1.760000e+02", "S_rect_00: 1.750000e+02"))
    with pytest.raises(DatasetError, match=r"image_00/data_rect/0000000000\.png: image is 176x47 .* says 175x47"):
        Kitti360Dataset(world, image_size=SIZE)[0]


def test_bad_options_are_rejected(world):
    with pytest.raises(ValueError, match="fisheye_model"):
        Kitti360Dataset(world, fisheye_model="mei")
    with pytest.raises(ValueError, match="preprocessed"):
        Kitti360Dataset(world, preprocessed="yes")
