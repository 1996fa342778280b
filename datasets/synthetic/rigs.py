"""Sensor rigs of the synthetic KITTI-360 and KITTI-Raw cars, with realistic calibration values.

All extrinsics are float64 4 x 4 transforms named ``a_to_b``. The KITTI-360 "pose" (IMU) frame and
the KITTI-Raw vehicle frame are x forward, y left, z up; cameras use the OpenCV frame. The rectified
cameras are chosen first and the unrectified ones derived from them (``cam = inv(R_rect) @ rect``),
so the loaders' rule ``rect_to_pose = cam_to_pose @ inv(R_rect)`` (REFERENCE 6.1) recovers exactly
the frames the images were rendered in.

``scale`` < 1 gives the small test rig: images shrink and the intrinsics scale with the pixel
centre convention ``c' = (c + 0.5) s - 0.5``; the geometry is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datasets.mei import MeiCamera
from utils.geometry import rotation_x, rotation_y, rotation_z

# Columns are the camera axes (x right, y down, z forward) in the x-forward/y-left/z-up frame.
FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
LEFT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
RIGHT = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])

KITTI360_BASELINE = 0.5947
KITTI360_IMU_HEIGHT = 0.93
EGO_LATERAL = -1.9  # right lane (left is +)

MEI_02 = dict(xi=2.2134047507854890, k1=1.6798235660113681e-02, k2=1.6548773243373522, p1=4.2223943394772046e-04,
              p2=4.2462134260997584e-04, gamma1=1.3363220825849971e03, gamma2=1.3357883350012958e03,
              u0=7.1694323510126321e02, v0=7.0576498308221585e02)  # fmt: skip
MEI_03 = dict(xi=2.5535139132482758, k1=4.9370396274089505e-02, k2=4.5068455478645308, p1=1.3477698472982495e-03,
              p2=-7.0340482615055284e-04, gamma1=1.4854388981875156e03, gamma2=1.4849477411748708e03,
              u0=6.9888316784030962e02, v0=6.9814541887723055e02)  # fmt: skip


def small_rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """R_z R_y R_x from angles in degrees (3, 3) float64."""
    R = rotation_z(math.radians(rz_deg)) @ rotation_y(math.radians(ry_deg)) @ rotation_x(math.radians(rx_deg))
    return R.numpy()


def rigid(R: np.ndarray, t) -> np.ndarray:
    """(4, 4) from a rotation (3, 3) and a translation (3,)."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def homogeneous(R: np.ndarray) -> np.ndarray:
    """A rotation (3, 3) as a (4, 4) transform."""
    return rigid(R, np.zeros(3))


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel intrinsics (3, 3) for an image resized by (sx, sy) (pixel centres at integers)."""
    K = K.copy()
    K[0, 0], K[0, 2] = K[0, 0] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return K


def scaled_mei(values: dict, size: int) -> MeiCamera:
    """An MEI camera of the 1400 x 1400 KITTI-360 fisheye resized to ``size`` x ``size``."""
    s = size / 1400.0
    v = dict(values)
    v["gamma1"], v["gamma2"] = v["gamma1"] * s, v["gamma2"] * s
    v["u0"], v["v0"] = (v["u0"] + 0.5) * s - 0.5, (v["v0"] + 0.5) * s - 0.5
    return MeiCamera(**v, width=size, height=size)


@dataclass
class Kitti360Rig:
    """The KITTI-360 car: 2 rectified perspective cameras, 2 MEI fisheyes, 1 lidar."""

    width: int
    height: int
    K: np.ndarray  # (3, 3) rectified intrinsics (P_rect_00[:, :3])
    rect_to_pose: tuple[np.ndarray, np.ndarray]  # rect 00, rect 01
    R_rect: tuple[np.ndarray, np.ndarray]  # (3, 3) each
    fisheyes: tuple[MeiCamera, MeiCamera]  # image_02, image_03
    fisheye_to_pose: tuple[np.ndarray, np.ndarray]
    velo_to_pose: np.ndarray
    lidar_beams: int
    lidar_azimuth_step: float

    @property
    def cam_to_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Unrectified cameras 00, 01 -> pose (what ``calib_cam_to_pose.txt`` stores)."""
        return tuple(T @ homogeneous(R) for T, R in zip(self.rect_to_pose, self.R_rect, strict=True))

    def projection(self, camera: int) -> np.ndarray:
        """(3, 4) rectified projection of camera 0 or 1 (stereo baseline in P[0, 3])."""
        P = np.zeros((3, 4))
        P[:, :3] = self.K
        P[0, 3] = -self.K[0, 0] * KITTI360_BASELINE * camera
        return P


def kitti360_rig(small: bool) -> Kitti360Rig:
    """The synthetic KITTI-360 rig; ``small`` halves every image and uses a 32-beam lidar."""
    s = 0.5 if small else 1.0
    K = np.array([[552.554261, 0.0, 682.049453], [0.0, 552.554261, 238.769549], [0.0, 0.0, 1.0]])
    rect00 = rigid(FORWARD @ small_rotation(-0.6, 0.2, 0.0), [1.52, 0.30, 0.72])
    rect01 = rect00 @ rigid(np.eye(3), [KITTI360_BASELINE, 0.0, 0.0])
    fish02 = rigid(LEFT @ small_rotation(0.4, -0.3, 0.5), [0.75, 0.95, 0.68])
    fish03 = rigid(RIGHT @ small_rotation(-0.3, 0.4, -0.4), [0.75, -0.95, 0.68])
    size = round(1400 * s)
    return Kitti360Rig(
        width=round(1408 * s),
        height=round(376 * s),
        K=scale_intrinsics(K, s, s),
        rect_to_pose=(rect00, rect01),
        R_rect=(small_rotation(0.35, -0.25, 0.15), small_rotation(-0.3, 0.4, 0.2)),
        fisheyes=(scaled_mei(MEI_02, size), scaled_mei(MEI_03, size)),
        fisheye_to_pose=(fish02, fish03),
        velo_to_pose=rigid(small_rotation(0.1, -0.2, 0.3), [0.78, 0.0, 0.80]),
        lidar_beams=32 if small else 64,
        lidar_azimuth_step=0.36 if small else 0.18,
    )


@dataclass
class KittiRawRig:
    """The KITTI-Raw car: colour stereo pair 02/03 expressed in rectified camera 0, and a lidar."""

    width: int
    height: int
    P_rect: dict[int, np.ndarray]  # camera index (0..3) -> (3, 4); y/z terms of P[:, 3] are 0
    R_rect_00: np.ndarray  # (3, 3)
    rect0_to_vehicle: np.ndarray  # rectified camera 0 -> vehicle (x forward, y left, z up, on the ground)
    velo_to_vehicle: np.ndarray
    imu_to_vehicle: np.ndarray
    lidar_beams: int
    lidar_azimuth_step: float

    @property
    def cam0_to_vehicle(self) -> np.ndarray:
        """Unrectified camera 0 -> vehicle."""
        return self.rect0_to_vehicle @ homogeneous(self.R_rect_00)

    def cam_to_rect0(self, camera: int) -> np.ndarray:
        """Pinhole camera 2 or 3 in rectified camera-0 coordinates: a pure x translation (the loaders' model)."""
        P = self.P_rect[camera]
        return rigid(np.eye(3), [-P[0, 3] / P[0, 0], 0.0, 0.0])


def kitti_raw_rig(small: bool) -> KittiRawRig:
    """The synthetic KITTI-Raw rig with 2011_09_26 intrinsics (halved images when ``small``)."""
    width, height = (621, 188) if small else (1242, 375)
    sx, sy = width / 1242.0, height / 375.0
    K = scale_intrinsics(np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]]), sx, sy)
    offsets = {0: 0.0, 1: -0.537150653, 2: 44.85728 / 721.5377, 3: -339.5242 / 721.5377}  # P[0, 3] / fx
    P_rect = {}
    for camera, offset in offsets.items():
        P_rect[camera] = np.concatenate([K, np.array([[K[0, 0] * offset], [0.0], [0.0]])], axis=1)
    return KittiRawRig(
        width=width,
        height=height,
        P_rect=P_rect,
        R_rect_00=small_rotation(0.42, -0.56, 0.3),
        rect0_to_vehicle=rigid(FORWARD @ small_rotation(-0.4, 0.0, 0.0), [1.0, 0.2, 1.65]),
        velo_to_vehicle=rigid(small_rotation(0.0, 0.1, -0.2), [0.73, 0.2, 1.73]),
        imu_to_vehicle=rigid(np.eye(3), [-0.08, 0.5, 0.93]),
        lidar_beams=32 if small else 64,
        lidar_azimuth_step=0.36 if small else 0.18,
    )
