"""A tiny KITTI-Raw tree in the real layout, with hand-chosen calibration, images, scans and poses.

Camera: 12 x 40 pixels, fx = fy = 20, cx = 19.3, cy = 5.2; image_02 sits 0.06 m left of cam0 and image_03
0.48 m right of it (P_rect_0x[0, 3] = -fx * x_centre). R_rect_00 = I; the velodyne frame (x forward, y left,
z up) maps to cam0 by a pure axis permutation, so velodyne (x, y, z) is camera (-y, -z, x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from datasets.io import write_rgb, write_velodyne

DATE = "2011_09_26"
DRIVE_JPG = f"{DATE}/{DATE}_drive_0001_sync"
DRIVE_PNG = f"{DATE}/{DATE}_drive_0002_sync"
HEIGHT, WIDTH = 12, 40
FX, CX, CY = 20.0, 19.3, 5.2
X_LEFT, X_RIGHT = -0.06, 0.48  # camera centres in rectified cam0
NUM_FRAMES = 3


def calib_line(key: str, *values: float) -> str:
    """One calibration line in the KITTI text format (``%e`` numbers)."""
    return f"{key}: " + " ".join(f"{v:e}" for v in values)


IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
CAM_TO_CAM = (
    "\n".join(
        [
            "calib_time: 09-Jan-2012 13:57:47",
            calib_line("corner_dist", 0.0995),
            calib_line("S_00", 1392, 512),
            calib_line("K_00", 984.2439, 0, 690, 0, 980.8141, 233.1966, 0, 0, 1),
            calib_line("D_00", -0.3728755, 0.2037299, 0.002219027, 0.001383707, -0.07233722),
            calib_line("R_00", *IDENTITY),
            calib_line("T_00", 0, 0, 0),
            calib_line("S_rect_00", WIDTH, HEIGHT),
            calib_line("R_rect_00", *IDENTITY),
            calib_line("P_rect_00", FX, 0, CX, 0, 0, FX, CY, 0, 0, 0, 1, 0),
            calib_line("S_02", 1392, 512),
            calib_line("S_rect_02", WIDTH, HEIGHT),
            calib_line("R_rect_02", *IDENTITY),
            # the y term 0.2 of the 4th column shifts projections but not the stereo offset (ignored officially)
            calib_line("P_rect_02", FX, 0, CX, -FX * X_LEFT, 0, FX, CY, 0.2, 0, 0, 1, 0),
            calib_line("S_rect_03", WIDTH, HEIGHT),
            calib_line("P_rect_03", FX, 0, CX, -FX * X_RIGHT, 0, FX, CY, 0.2, 0, 0, 1, 0),
        ]
    )
    + "\n"
)
VELO_TO_CAM = (
    "\n".join(
        [
            "calib_time: 15-Mar-2012 11:37:16",
            calib_line("R", 0, -1, 0, 0, 0, -1, 1, 0, 0),
            calib_line("T", 0, 0, 0),
            calib_line("delta_f", 0, 0),
            calib_line("delta_c", 0, 0),
        ]
    )
    + "\n"
)

# Velodyne points of frame 0 (x, y, z, reflectance) and where the devkit convention puts them.
SCAN = np.array(
    [
        [20.0, 0.0, 0.0, 0.5],  # u = 19.36 -> col 18, v = 5.21 -> row 4, depth 20 (loses to the next point)
        [10.0, 0.0, 0.0, 0.5],  # u = 19.3 + 1.2 / 10 = 19.42 -> col 18, v = 5.2 + 0.2 / 10 -> row 4, depth 10
        [10.0, 0.0, 1.6, 0.5],  # v = 5.22 - 20 * 1.6 / 10 = 2.02 -> row 1: outside the Garg crop rows [4, 11)
        [100.0, -1.0, 0.0, 0.5],  # u = (20 + 1930 + 1.2) / 100 = 19.512 -> col 19, row 4, depth 100 > 80
        [-10.0, 0.0, 0.0, 0.5],  # behind the scanner
    ],
    dtype=np.float32,
)


def view_color(is_right: bool, frame: int) -> tuple[int, int, int]:
    """The uniform RGB colour of one image, so tests can tell the views apart."""
    return (20 + 60 * frame, 200 if is_right else 60, 90)


def pose(frame: int) -> np.ndarray:
    """T_world<-cam0 of a frame: a turn about y and a drive forward (frame 0 is the identity)."""
    angle = 0.1 * frame
    T = np.eye(4)
    T[:3, :3] = [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    T[:3, 3] = [0.1 * frame, 0.01 * frame, 1.0 * frame]
    return T


def translation_x(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


@dataclass
class Tree:
    root: Path
    pose_root: Path
    splits: Path

    def drive_dir(self, sequence: str) -> Path:
        return self.root / sequence

    def split(self, *lines: str, name: str = "split.txt") -> Path:
        path = self.splits / name
        path.write_text("\n".join(lines) + "\n")
        return path


def write_drive(tree: Tree, sequence: str, suffix: str, with_poses: bool = True) -> None:
    drive = tree.drive_dir(sequence)
    for frame in range(NUM_FRAMES):
        for is_right, folder in ((False, "image_02"), (True, "image_03")):
            image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
            image[:] = view_color(is_right, frame)
            write_rgb(drive / folder / "data" / f"{frame:010d}{suffix}", image)
        scan = SCAN if frame == 0 else SCAN[:1]
        write_velodyne(drive / "velodyne_points" / "data" / f"{frame:010d}.bin", scan)
    if with_poses:
        rows = [" ".join(f"{v:.9f}" for v in pose(frame)[:3].reshape(-1)) for frame in range(NUM_FRAMES)]
        path = tree.pose_root / f"{sequence}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    tree = Tree(root=tmp_path / "KITTI-Raw", pose_root=tmp_path / "poses", splits=tmp_path / "splits")
    (tree.root / DATE).mkdir(parents=True)
    tree.splits.mkdir()
    (tree.root / DATE / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    (tree.root / DATE / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    write_drive(tree, DRIVE_JPG, ".jpg")
    write_drive(tree, DRIVE_PNG, ".png")
    return tree
