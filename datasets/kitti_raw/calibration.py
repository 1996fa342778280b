"""Per-date KITTI-Raw calibration (REFERENCE 6.5): intrinsics, stereo offsets, velodyne -> image.

Files: ``<date>/calib_cam_to_cam.txt`` (``P_rect_02``, ``P_rect_03``, ``R_rect_00``, ``S_rect_02``) and
``<date>/calib_velo_to_cam.txt`` (``R``, ``T``: velodyne -> unrectified cam0). ``calib_time`` lines and
other non-numeric values are skipped by :func:`read_key_values`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.calibration import expect_matrix, read_key_values

CALIB_HINT = (
    "Download the per-date calibration zips (e.g. 2011_09_26_calib.zip) from the KITTI raw data page "
    "(https://www.cvlibs.net/datasets/kitti/raw_data.php) and extract them next to the drive folders: "
    "<data_path>/<date>/calib_cam_to_cam.txt and calib_velo_to_cam.txt."
)


@dataclass(frozen=True)
class KittiRawCalibration:
    """Calibration of one recording date; matrices are float64."""

    P_rect_02: np.ndarray  # (3, 4) rectified cam0 -> left colour image (pixels)
    P_rect_03: np.ndarray  # (3, 4) rectified cam0 -> right colour image (pixels)
    R_rect_00: np.ndarray  # (3, 3) unrectified cam0 -> rectified cam0
    velo_to_cam0: np.ndarray  # (4, 4) velodyne -> unrectified cam0
    image_size: tuple[int, int] | None  # (H, W) of the rectified colour images (S_rect_02), None if absent

    def projection(self, is_right: bool) -> np.ndarray:
        """Projection matrix (3, 4) of the right (image_03) or left (image_02) colour camera."""
        return self.P_rect_03 if is_right else self.P_rect_02

    @property
    def intrinsics(self) -> np.ndarray:
        """Pixel intrinsics (3, 3) of P_rect_02; both rectified colour cameras share them."""
        return self.P_rect_02[:, :3].copy()

    def cam_to_rect_cam0(self, is_right: bool) -> np.ndarray:
        """(4, 4) colour camera -> rectified cam0: a pure x translation.

        ``P_rect_0x[0, 3] = fx * t_x`` with ``t_x`` the rectified cam0 -> cam x offset, so the camera centre
        lies at ``x = -P[0, 3] / P[0, 0]``. The y/z terms of the 4th column are ignored (~4 mm), as officially.
        """
        P = self.projection(is_right)
        T = np.eye(4)
        T[0, 3] = -P[0, 3] / P[0, 0]
        return T

    def velo_to_image(self, is_right: bool = False) -> np.ndarray:
        """(3, 4) velodyne -> image pixels (homogeneous): ``P_rect_0x @ R_rect_00 @ [R|T]_velo->cam``."""
        R_rect = np.eye(4)
        R_rect[:3, :3] = self.R_rect_00
        return self.projection(is_right) @ R_rect @ self.velo_to_cam0


def load_calibration(date_dir: Path) -> KittiRawCalibration:
    """Read ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` of one date folder."""
    date_dir = Path(date_dir)
    cam_path = date_dir / "calib_cam_to_cam.txt"
    velo_path = date_dir / "calib_velo_to_cam.txt"
    cam = read_key_values(cam_path, CALIB_HINT)
    velo = read_key_values(velo_path, CALIB_HINT)

    velo_to_cam0 = np.eye(4)
    velo_to_cam0[:3, :3] = expect_matrix(velo, "R", (3, 3), velo_path)
    velo_to_cam0[:3, 3] = expect_matrix(velo, "T", (3, 1), velo_path)[:, 0]

    image_size = None
    if "S_rect_02" in cam:
        width, height = expect_matrix(cam, "S_rect_02", (1, 2), cam_path)[0]
        image_size = (int(round(height)), int(round(width)))
    return KittiRawCalibration(
        P_rect_02=expect_matrix(cam, "P_rect_02", (3, 4), cam_path),
        P_rect_03=expect_matrix(cam, "P_rect_03", (3, 4), cam_path),
        R_rect_00=expect_matrix(cam, "R_rect_00", (3, 3), cam_path),
        velo_to_cam0=velo_to_cam0,
        image_size=image_size,
    )
