"""KITTI-360 calibration and poses (REFERENCE 6.1).

Every transform is a float64 (4, 4) tensor named by direction. The camera frames are the
*rectified* perspective cameras ``00``/``01`` and the *virtual pinholes* ``02``/``03`` inside the
fisheyes (rotated by ``fisheye_virtual_rotation``); ``pose`` is the IMU frame of ``poses.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import Tensor

from datasets.calibration import DatasetError, expect_matrix, read_key_values, read_matrix_rows, require_file
from datasets.kitti_360.layout import HINT_CALIBRATION, HINT_POSES
from datasets.mei import MeiCamera
from utils.geometry import fisheye_virtual_rotation, invert_rigid, normalize_intrinsics


@dataclass(frozen=True)
class Kitti360Calibration:
    """Everything the loader needs from ``calibration/``."""

    K_norm: Tensor  # (3, 3) from P_rect_00, normalised with the S_rect_00 size; shared by all views
    perspective_size: tuple[int, int]  # (H, W) of the rectified perspective images (S_rect_00)
    cam_to_pose: dict[str, Tensor]  # camera "00".."03" -> (4, 4) rectified / virtual camera -> IMU
    fisheye: dict[str, MeiCamera]  # "02", "03" -> MEI intrinsics (pixels) and image size
    fisheye_rotation: dict[str, Tensor]  # "02", "03" -> (3, 3) virtual pinhole -> fisheye camera
    velo_to_pose: Tensor  # (4, 4)
    velo_to_rect00: Tensor  # (4, 4)


def _homogeneous(matrix: np.ndarray) -> Tensor:
    """(3, 4) or (3, 3) -> (4, 4) float64 tensor."""
    T = torch.eye(4, dtype=torch.float64)
    m = torch.as_tensor(matrix, dtype=torch.float64)
    T[: m.shape[0], : m.shape[1]] = m
    return T


def read_fisheye_yaml(path: Path) -> MeiCamera:
    """Parse ``image_02.yaml`` / ``image_03.yaml`` (OpenCV YAML; its ``%YAML:1.0`` line is skipped)."""
    path = require_file(path, HINT_CALIBRATION)
    lines = path.read_text().splitlines()
    skipped = 1 if lines and lines[0].startswith("%YAML") else 0
    try:
        data = yaml.safe_load("\n".join(lines[skipped:]))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1 + skipped}" if mark is not None else ""
        raise DatasetError(f"{path}{where}: malformed YAML ({error})\n{HINT_CALIBRATION}") from None

    def get(section: str | None, key: str) -> float:
        block = data if section is None else (data or {}).get(section)
        if not isinstance(block, dict) or key not in block:
            name = key if section is None else f"{section}.{key}"
            raise DatasetError(f"{path}: key {name!r} not found\n{HINT_CALIBRATION}")
        try:
            return float(block[key])
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: key {key!r} is not a number: {block[key]!r}") from None

    return MeiCamera(
        xi=get("mirror_parameters", "xi"),
        k1=get("distortion_parameters", "k1"),
        k2=get("distortion_parameters", "k2"),
        p1=get("distortion_parameters", "p1"),
        p2=get("distortion_parameters", "p2"),
        gamma1=get("projection_parameters", "gamma1"),
        gamma2=get("projection_parameters", "gamma2"),
        u0=get("projection_parameters", "u0"),
        v0=get("projection_parameters", "v0"),
        width=int(get(None, "image_width")),
        height=int(get(None, "image_height")),
    )


def load_calibration(calib_dir: Path, fisheye_rotation: tuple[float, float] = (0.0, -15.0)) -> Kitti360Calibration:
    """Read the five calibration files and derive the transforms of REFERENCE 6.1.

    ``fisheye_rotation`` is (yaw, pitch) in degrees of the virtual pinhole in the left fisheye;
    the right fisheye uses ``-yaw``.
    """
    calib_dir = Path(calib_dir)
    cam_to_pose_file = calib_dir / "calib_cam_to_pose.txt"
    cam_to_velo_file = calib_dir / "calib_cam_to_velo.txt"
    perspective_file = calib_dir / "perspective.txt"

    raw_to_pose = read_key_values(cam_to_pose_file, HINT_CALIBRATION)
    T_raw_to_pose = {
        c: _homogeneous(expect_matrix(raw_to_pose, f"image_{c}", (3, 4), cam_to_pose_file))
        for c in ("00", "01", "02", "03")
    }
    _, velo_rows = read_matrix_rows(cam_to_velo_file, 12, HINT_CALIBRATION)
    if velo_rows.shape[0] != 1:
        raise DatasetError(f"{cam_to_velo_file}: expected one line of 12 numbers, found {velo_rows.shape[0]} lines")
    T_00_to_velo = _homogeneous(velo_rows.reshape(3, 4))

    perspective = read_key_values(perspective_file, HINT_CALIBRATION)
    P_rect_00 = expect_matrix(perspective, "P_rect_00", (3, 4), perspective_file)
    R_rect = {
        c: _homogeneous(expect_matrix(perspective, f"R_rect_{c}", (3, 3), perspective_file)) for c in ("00", "01")
    }
    width, height = (int(round(v)) for v in expect_matrix(perspective, "S_rect_00", (1, 2), perspective_file)[0])

    fisheye = {c: read_fisheye_yaml(calib_dir / f"image_{c}.yaml") for c in ("02", "03")}
    yaw, pitch = fisheye_rotation
    rotation = {"02": fisheye_virtual_rotation(yaw, pitch), "03": fisheye_virtual_rotation(-yaw, pitch)}

    cam_to_pose = {
        "00": T_raw_to_pose["00"] @ invert_rigid(R_rect["00"]),
        "01": T_raw_to_pose["01"] @ invert_rigid(R_rect["01"]),
        "02": T_raw_to_pose["02"] @ _homogeneous(rotation["02"].numpy()),
        "03": T_raw_to_pose["03"] @ _homogeneous(rotation["03"].numpy()),
    }
    velo_to_rect00 = R_rect["00"] @ invert_rigid(T_00_to_velo)
    K = torch.as_tensor(P_rect_00[:, :3], dtype=torch.float64)
    return Kitti360Calibration(
        K_norm=normalize_intrinsics(K, width, height),
        perspective_size=(height, width),
        cam_to_pose=cam_to_pose,
        fisheye=fisheye,
        fisheye_rotation=rotation,
        velo_to_pose=cam_to_pose["00"] @ velo_to_rect00,
        velo_to_rect00=velo_to_rect00,
    )


def load_poses(path: Path) -> tuple[np.ndarray, Tensor]:
    """Read ``poses.txt``: frame ids (N,) int64 and IMU->world transforms (N, 4, 4) float64.

    Rows are ``frame_id`` followed by the 12 numbers of a 3 x 4 matrix; rows are sorted by id.
    """
    ids, rows = read_matrix_rows(path, 12, HINT_POSES, first_column_is_id=True)
    if len(ids) == 0:
        raise DatasetError(f"{path}: no poses in file\n{HINT_POSES}")
    order = np.argsort(ids, kind="stable")
    poses = torch.eye(4, dtype=torch.float64).repeat(len(ids), 1, 1)
    poses[:, :3, :] = torch.as_tensor(rows[order].reshape(-1, 3, 4))
    return ids[order], poses
