"""Writers of the KITTI-360 and KITTI-Raw calibration, pose and split files (the real text formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.mei import MeiCamera
from datasets.synthetic.drives import DriveSpec
from datasets.synthetic.rigs import Kitti360Rig, KittiRawRig

RAW_DATE = "2011_09_26"
CALIB_TIME = "calib_time: 09-Jan-2012 13:57:47"


def _numbers(values) -> str:
    return " ".join(f"{v:.9e}" for v in np.asarray(values, dtype=np.float64).ravel())


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _mei_yaml(camera: MeiCamera, name: str) -> str:
    return (
        "%YAML:1.0\n---\nmodel_type: MEI\n"
        f"camera_name: {name}\nimage_width: {camera.width}\nimage_height: {camera.height}\n"
        f"mirror_parameters:\n   xi: {camera.xi:.16e}\n"
        f"distortion_parameters:\n   k1: {camera.k1:.16e}\n   k2: {camera.k2:.16e}\n"
        f"   p1: {camera.p1:.16e}\n   p2: {camera.p2:.16e}\n"
        f"projection_parameters:\n   gamma1: {camera.gamma1:.16e}\n   gamma2: {camera.gamma2:.16e}\n"
        f"   u0: {camera.u0:.16e}\n   v0: {camera.v0:.16e}\n"
    )


def _unrectified_block(index: int, K: np.ndarray, size, R: np.ndarray, T: np.ndarray, D) -> list[str]:
    return [
        f"S_{index:02d}: {_numbers(size)}",
        f"K_{index:02d}: {_numbers(K)}",
        f"D_{index:02d}: {_numbers(D)}",
        f"R_{index:02d}: {_numbers(R)}",
        f"T_{index:02d}: {_numbers(T)}",
    ]


def write_kitti360_calibration(root: Path, rig: Kitti360Rig) -> None:
    """``calibration/``: calib_cam_to_pose.txt, calib_cam_to_velo.txt, perspective.txt, image_02/03.yaml."""
    calib = root / "calibration"
    cam_to_pose = rig.cam_to_pose
    lines = [f"image_{i:02d}: {_numbers(T[:3])}" for i, T in enumerate([*cam_to_pose, *rig.fisheye_to_pose])]
    write_text(calib / "calib_cam_to_pose.txt", "\n".join(lines) + "\n")
    cam00_to_velo = np.linalg.inv(rig.velo_to_pose) @ cam_to_pose[0]
    write_text(calib / "calib_cam_to_velo.txt", _numbers(cam00_to_velo[:3]) + "\n")
    # Unrectified cameras: plausible raw intrinsics; extrinsics relative to camera 00 as in KITTI.
    raw_K = np.array([[788.629315, 0.0, 687.158398], [0.0, 786.382230, 317.752196], [0.0, 0.0, 1.0]])
    raw_K = raw_K * np.array([[rig.width / 1408.0], [rig.height / 376.0], [1.0]])
    raw_size = [round(1392 * rig.width / 1408), round(512 * rig.height / 376)]
    lines = ["calib_time: 09-Jan-2013 15:43:58", "corner_dist: 9.950000e-02"]
    for i in range(2):
        cam0_to_cami = np.linalg.inv(cam_to_pose[i]) @ cam_to_pose[0]
        D = [-0.344441, 0.141678, 0.000414, -0.000222, -0.029608]
        lines += _unrectified_block(i, raw_K, raw_size, cam0_to_cami[:3, :3], cam0_to_cami[:3, 3], D)
        lines += [
            f"S_rect_{i:02d}: {_numbers([rig.width, rig.height])}",
            f"R_rect_{i:02d}: {_numbers(rig.R_rect[i])}",
            f"P_rect_{i:02d}: {_numbers(rig.projection(i))}",
        ]
    write_text(calib / "perspective.txt", "\n".join(lines) + "\n")
    for camera, name in zip(rig.fisheyes, ("image_02", "image_03"), strict=True):
        write_text(calib / f"{name}.yaml", _mei_yaml(camera, name))


def write_kitti360_poses(root: Path, drive: DriveSpec, pose_to_world: np.ndarray, first_posed: int) -> None:
    """``data_poses/<seq>/poses.txt``: ``frame 12 floats`` rows; frames before ``first_posed`` have no row."""
    rows = [f"{i} {_numbers(T[:3])}" for i, T in enumerate(pose_to_world) if i >= first_posed]
    write_text(root / "data_poses" / drive.name / "poses.txt", "\n".join(rows) + "\n")


def write_kitti_raw_calibration(root: Path, rig: KittiRawRig) -> None:
    """``<date>/calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt``, ``calib_imu_to_velo.txt``."""
    date_dir = root / RAW_DATE
    raw_K = np.array([[984.2439, 0.0, 690.0], [0.0, 980.8141, 233.1966], [0.0, 0.0, 1.0]])
    raw_K = raw_K * np.array([[rig.width / 1242.0], [rig.height / 375.0], [1.0]])
    raw_size = [round(1392 * rig.width / 1242), round(512 * rig.height / 375)]
    lines = [CALIB_TIME, "corner_dist: 9.950000e-02"]
    rect_rotations = {0: rig.R_rect_00}
    for camera in (1, 2, 3):
        angle = np.radians(0.2 * camera)
        c, s = np.cos(angle), np.sin(angle)
        rect_rotations[camera] = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]) @ rig.R_rect_00
    for camera in range(4):
        # cam_x = R_rect_0x^T (rect0 - centre): consistent unrectified extrinsics relative to camera 0.
        centre = -rig.P_rect[camera][0, 3] / rig.P_rect[camera][0, 0]
        R = rect_rotations[camera].T @ rig.R_rect_00
        T = -rect_rotations[camera].T @ np.array([centre, 0.0, 0.0])
        D = [-0.3728755, 0.2037299, 0.002219027, 0.001383707, -0.07233722]
        lines += _unrectified_block(camera, raw_K, raw_size, R, T, D)
        lines += [
            f"S_rect_{camera:02d}: {_numbers([rig.width, rig.height])}",
            f"R_rect_{camera:02d}: {_numbers(rect_rotations[camera])}",
            f"P_rect_{camera:02d}: {_numbers(rig.P_rect[camera])}",
        ]
    write_text(date_dir / "calib_cam_to_cam.txt", "\n".join(lines) + "\n")
    velo_to_cam0 = np.linalg.inv(rig.cam0_to_vehicle) @ rig.velo_to_vehicle
    imu_to_velo = np.linalg.inv(rig.velo_to_vehicle) @ rig.imu_to_vehicle
    for name, T in (("calib_velo_to_cam.txt", velo_to_cam0), ("calib_imu_to_velo.txt", imu_to_velo)):
        text = f"{CALIB_TIME}\nR: {_numbers(T[:3, :3])}\nT: {_numbers(T[:3, 3])}\n"
        if name == "calib_velo_to_cam.txt":
            text += "delta_f: 0.000000e+00 0.000000e+00\ndelta_c: 0.000000e+00 0.000000e+00\n"
        write_text(date_dir / name, text)


def write_orb_slam_poses(root: Path, drive: DriveSpec, rect0_to_world: np.ndarray) -> None:
    """``orb-slam_poses/<date>/<drive>.txt``: 3x4 T_world<-rect-cam0 per frame, relative to the first."""
    relative = np.linalg.inv(rect0_to_world[0]) @ rect0_to_world
    relative[0] = np.eye(4)
    rows = [_numbers(T[:3]) for T in relative]
    write_text(root / "orb-slam_poses" / RAW_DATE / f"{drive.name}.txt", "\n".join(rows) + "\n")


def write_split(path: Path, entries: list[tuple[str, int, str]]) -> None:
    """Split file lines ``<sequence> <%010d frame> <l|r>``."""
    write_text(path, "".join(f"{seq} {frame:010d} {side}\n" for seq, frame, side in entries))
