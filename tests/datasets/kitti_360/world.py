"""A tiny KITTI-360 copy written by hand in the real on-disk formats.

Images are uniform colours that encode (camera, frame), so the view order can be read back from
the pixels: R = 30 + 50 * camera, G = 10 + 20 * frame, B = 100.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from datasets.io import write_rgb, write_velodyne

SEQ_A = "2013_05_28_drive_0000_sync"  # frames 0..7 on disk, frame 3 has no pose
SEQ_B = "2013_05_28_drive_0002_sync"  # frames 0..4, all posed
FRAMES = {SEQ_A: list(range(8)), SEQ_B: list(range(5))}
UNPOSED = {SEQ_A: {3}, SEQ_B: set()}
PERSP_W, PERSP_H = 176, 47  # KITTI-360 1408 x 376 divided by 8
FISH_SIZE = 100  # KITTI-360 1400 x 1400 divided by 14
P_RECT = np.array([[552.554261, 0.0, 682.049453], [0.0, 552.554261, 238.769549], [0.0, 0.0, 1.0]]) / np.array(
    [[8.0], [8.0], [1.0]]
)
BASELINE = 0.6
# Rectified cam 0 coordinates of the known lidar point (and of one behind it on the same ray).
KNOWN_POINT = np.array([0.5, 0.2, 10.0])

FISHEYE = {
    "02": dict(xi=2.2134047508, k1=0.016798235660, k2=1.6548773243, p1=4.2223943e-4, p2=4.2462134e-4,
               gamma1=1336.3220826 / 14, gamma2=1335.7883350 / 14, u0=716.94323510 / 14, v0=705.76498308 / 14),
    "03": dict(xi=2.5535139132, k1=0.034932480444, k2=3.7909659131, p1=-3.2014207e-4, p2=1.7584640e-3,
               gamma1=1520.6941006 / 14, gamma2=1517.8262927 / 14, u0=697.37635338 / 14, v0=709.87063081 / 14),
}  # fmt: skip


def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rigid(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


# Pose ("IMU") frame: x forward, y right, z down, as in KITTI-360. Columns are the camera axes.
CAM_TO_POSE = {
    "00": rigid(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]) @ rot_x(-0.1) @ rot_y(0.03), [1.575, 0.004, -0.65]),
    "01": rigid(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]) @ rot_x(-0.1) @ rot_y(0.02), [1.598, 0.598, -0.649]),
    "02": rigid(np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]) @ rot_z(0.004) @ rot_x(0.01), [0.726, -0.15, -1.069]),
    "03": rigid(np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]]) @ rot_z(-0.001) @ rot_x(0.025), [0.702, 0.746, -1.075]),
}
R_RECT = {"00": rot_z(0.007) @ rot_x(0.0001), "01": rot_z(0.005) @ rot_x(-0.002)}
CAM00_TO_VELO = rigid(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]]) @ rot_x(0.088) @ rot_y(-0.04), [0.80, 0.30, -0.18])


def imu_to_world(frame: int) -> np.ndarray:
    return rigid(rot_z(0.05 * frame) @ rot_x(0.01 * frame), [1.3 * frame, 0.2 * frame, 0.01 * frame])


def view_color(camera: str, frame: int) -> tuple[int, int, int]:
    return 30 + 50 * int(camera), 10 + 20 * frame, 100


def _row(matrix: np.ndarray) -> str:
    return " ".join(f"{v:.15e}" for v in np.asarray(matrix).ravel())


def write_calibration(root: Path) -> None:
    calib = root / "calibration"
    calib.mkdir(parents=True, exist_ok=True)
    (calib / "calib_cam_to_pose.txt").write_text(
        "".join(f"image_{c}: {_row(CAM_TO_POSE[c][:3])}\n" for c in ("00", "01", "02", "03"))
    )
    (calib / "calib_cam_to_velo.txt").write_text(_row(CAM00_TO_VELO[:3]) + "\n")
    P0 = np.hstack([P_RECT, np.zeros((3, 1))])
    P1 = P0.copy()
    P1[0, 3] = -P_RECT[0, 0] * BASELINE
    lines = [
        "calib_time: 09-Jan-2012 13:57:47",
        "corner_dist: 9.950000e-02",
        "S_00: 1.392000e+03 5.120000e+02",
        f"S_rect_00: {PERSP_W:.6e} {PERSP_H:.6e}",
        f"R_rect_00: {_row(R_RECT['00'])}",
        f"P_rect_00: {_row(P0)}",
        f"S_rect_01: {PERSP_W:.6e} {PERSP_H:.6e}",
        f"R_rect_01: {_row(R_RECT['01'])}",
        f"P_rect_01: {_row(P1)}",
    ]
    (calib / "perspective.txt").write_text("\n".join(lines) + "\n")
    for camera, p in FISHEYE.items():
        text = (
            f"%YAML:1.0\n---\nmodel_type: MEI\ncamera_name: image_{camera}\n"
            f"image_width: {FISH_SIZE}\nimage_height: {FISH_SIZE}\n"
            f"mirror_parameters:\n   xi: {p['xi']:.16e}\n"
            f"distortion_parameters:\n   k1: {p['k1']:.16e}\n   k2: {p['k2']:.16e}\n"
            f"   p1: {p['p1']:.16e}\n   p2: {p['p2']:.16e}\n"
            f"projection_parameters:\n   gamma1: {p['gamma1']:.16e}\n   gamma2: {p['gamma2']:.16e}\n"
            f"   u0: {p['u0']:.16e}\n   v0: {p['v0']:.16e}\n"
        )
        (calib / f"image_{camera}.yaml").write_text(text)


def known_scan() -> np.ndarray:
    """Velodyne points: the known point, one behind it on the same ray, one behind the camera, noise."""
    velo_to_rect00 = rigid(R_RECT["00"], np.zeros(3)) @ np.linalg.inv(CAM00_TO_VELO)
    rect_points = np.array([KNOWN_POINT, KNOWN_POINT * 1.5, [0.0, 0.0, -5.0], [3.0, -1.0, 30.0]])
    homogeneous = np.hstack([rect_points, np.ones((4, 1))])
    velo = (np.linalg.inv(velo_to_rect00) @ homogeneous.T).T[:, :3]
    return np.hstack([velo, np.array([[0.1], [0.2], [0.3], [0.4]])]).astype(np.float32)


def write_world(root: Path, grey: int | None = None, scans: bool = True) -> Path:
    """Write the tiny KITTI-360 copy under ``root``; ``grey`` makes every image that uniform grey."""
    write_calibration(root)
    for sequence, frames in FRAMES.items():
        poses = [f"{f} {_row(imu_to_world(f)[:3])}" for f in frames if f not in UNPOSED[sequence]]
        pose_file = root / "data_poses" / sequence / "poses.txt"
        pose_file.parent.mkdir(parents=True, exist_ok=True)
        pose_file.write_text("\n".join(poses) + "\n")
        for frame in frames:
            for camera in ("00", "01", "02", "03"):
                color = (grey, grey, grey) if grey is not None else view_color(camera, frame)
                folder = "data_rect" if camera in ("00", "01") else "data_rgb"
                shape = (PERSP_H, PERSP_W, 3) if camera in ("00", "01") else (FISH_SIZE, FISH_SIZE, 3)
                image = np.empty(shape, dtype=np.uint8)
                image[:] = color
                write_rgb(root / "data_2d_raw" / sequence / f"image_{camera}" / folder / f"{frame:010d}.png", image)
            if scans:
                scan = known_scan()
                scan[:, 3] += frame  # tell the frames apart by reflectance
                write_velodyne(root / "data_3d_raw" / sequence / "velodyne_points" / "data" / f"{frame:010d}.bin", scan)
    return root
