"""KITTI-Raw calibration with the real 2011_09_26 numbers: K_norm, stereo offsets, velodyne -> image."""

import numpy as np
import pytest
import torch

from datasets.calibration import DatasetError
from datasets.kitti_raw.calibration import load_calibration
from utils.geometry import normalize_intrinsics

CAM_TO_CAM_2011_09_26 = (
    "\n".join(
        [
            "calib_time: 09-Jan-2012 13:57:47",
            "corner_dist: 9.950000e-02",
            "S_rect_00: 1.242000e+03 3.750000e+02",
            "R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 "
            "7.402527e-03 4.351614e-03 9.999631e-01",
            "P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 "
            "0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00",
            "S_rect_02: 1.242000e+03 3.750000e+02",
            "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 "
            "2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03",
            "S_rect_03: 1.242000e+03 3.750000e+02",
            "P_rect_03: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 "
            "2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03",
        ]
    )
    + "\n"
)
VELO_TO_CAM_2011_09_26 = (
    "\n".join(
        [
            "calib_time: 15-Mar-2012 11:37:16",
            "R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 "
            "7.523790e-03 1.480755e-02",
            "T: -4.069766e-03 -7.631618e-02 -2.717806e-01",
            "delta_f: 0.000000e+00 0.000000e+00",
            "delta_c: 0.000000e+00 0.000000e+00",
        ]
    )
    + "\n"
)


@pytest.fixture
def date_dir(tmp_path):
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM_2011_09_26)
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM_2011_09_26)
    return tmp_path


def test_image_size_and_normalised_intrinsics(date_dir):
    calib = load_calibration(date_dir)
    assert calib.image_size == (375, 1242)
    K_norm = normalize_intrinsics(torch.from_numpy(calib.intrinsics), 1242, 375)
    expected = [[2 * 721.5377 / 1242, 0, 2 * 609.5593 / 1242 - 1], [0, 2 * 721.5377 / 375, 2 * 172.8540 / 375 - 1]]
    assert torch.allclose(K_norm[:2], torch.tensor(expected, dtype=torch.float64))


def test_stereo_offsets_are_x_translations_from_the_projections(date_dir):
    calib = load_calibration(date_dir)
    left, right = calib.cam_to_rect_cam0(False), calib.cam_to_rect_cam0(True)
    assert left[0, 3] == pytest.approx(-44.85728 / 721.5377)  # image_02 ~6 cm left of cam0
    assert right[0, 3] == pytest.approx(339.5242 / 721.5377)  # image_03 ~47 cm right of cam0
    for T in (left, right):  # y/z terms of P_rect[:, 3] are ignored, as officially
        assert np.array_equal(T[:3, :3], np.eye(3)) and T[1, 3] == 0 and T[2, 3] == 0
    assert right[0, 3] - left[0, 3] == pytest.approx(0.5327, abs=1e-4)  # the colour stereo baseline


def test_velo_to_image_projects_velodyne_points(date_dir):
    calib = load_calibration(date_dir)
    # A point 10 m ahead of the velodyne is ~9.73 m ahead of the cameras (27 cm in front of the scanner);
    # the projective depth adds P_rect_02[2, 3] = 2.7 mm.
    q = calib.velo_to_image(False) @ np.array([10.0, 0.0, 0.0, 1.0])
    assert q[2] == pytest.approx(10.0 - 0.2718 + 0.0027, abs=0.01)
    assert 0 < q[0] / q[2] < 1242 and 0 < q[1] / q[2] < 375
    assert calib.velo_to_image(True).shape == (3, 4)


def test_malformed_calibration_line_names_file_and_line(date_dir):
    path = date_dir / "calib_cam_to_cam.txt"
    path.write_text(CAM_TO_CAM_2011_09_26 + "P_rect_04 7.2e+02 0.0\n")
    with pytest.raises(DatasetError, match=r"calib_cam_to_cam\.txt:10:"):
        load_calibration(date_dir)


def test_missing_key_and_missing_file(date_dir):
    (date_dir / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM_2011_09_26.replace("P_rect_03", "P_rect_99"))
    with pytest.raises(DatasetError, match="P_rect_03"):
        load_calibration(date_dir)
    (date_dir / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(DatasetError, match=r"calib_velo_to_cam\.txt[\s\S]*calibration zips"):
        load_calibration(date_dir)
