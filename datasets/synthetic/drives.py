"""Where the synthetic drives are on the street, and the poses of every frame.

A drive is a stretch of the road (start arc length + number of frames). The car advances
0.82-0.98 m per frame along the right lane at constant height and follows the road's mild turns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from datasets.synthetic.rigs import EGO_LATERAL, KITTI360_IMU_HEIGHT, Kitti360Rig, KittiRawRig
from datasets.synthetic.world import SyntheticWorld

DRIVE_GAP = 40.0  # metres of road between consecutive drives
MEAN_STEP = 0.9


@dataclass(frozen=True)
class DriveSpec:
    """One KITTI-360 sequence or KITTI-Raw drive."""

    name: str
    start_s: float
    num_frames: int

    def arclengths(self) -> np.ndarray:
        """(F,) road arc length of every frame."""
        i = np.arange(self.num_frames, dtype=np.float64)
        steps = MEAN_STEP + 0.08 * np.sin(0.37 * i + 0.01 * self.start_s)
        return self.start_s + np.concatenate([[0.0], np.cumsum(steps[:-1])])

    def length(self) -> float:
        return float(self.arclengths()[-1] - self.start_s) if self.num_frames else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def plan_drives(sequences: int, frames: int, raw_drives: int, raw_frames: int) -> tuple[list, list, float]:
    """Lay the drives one after another along the road; returns (KITTI-360 specs, KITTI-Raw specs, road end)."""
    s = 0.0
    kitti360, raw = [], []
    for i in range(sequences):
        kitti360.append(DriveSpec(f"2013_05_28_drive_{9000 + i:04d}_sync", s, frames))
        s += kitti360[-1].length() + DRIVE_GAP
    for i in range(raw_drives):
        raw.append(DriveSpec(f"2011_09_26_drive_{9001 + i:04d}_sync", s, raw_frames))
        s += raw[-1].length() + DRIVE_GAP
    return kitti360, raw, s


def kitti360_pose_to_world(world: SyntheticWorld, drive: DriveSpec) -> np.ndarray:
    """(F, 4, 4) IMU ("pose") frame -> world for every frame of a KITTI-360 sequence."""
    return world.vehicle_to_world(drive.arclengths(), EGO_LATERAL, KITTI360_IMU_HEIGHT)


def kitti360_camera_to_world(world: SyntheticWorld, drive: DriveSpec, rig: Kitti360Rig, camera: int) -> np.ndarray:
    """(F, 4, 4) camera -> world; cameras 0/1 are the RECTIFIED perspective cameras, 2/3 the fisheyes."""
    to_pose = rig.rect_to_pose[camera] if camera < 2 else rig.fisheye_to_pose[camera - 2]
    return kitti360_pose_to_world(world, drive) @ to_pose


def kitti_raw_rect0_to_world(world: SyntheticWorld, drive: DriveSpec, rig: KittiRawRig) -> np.ndarray:
    """(F, 4, 4) rectified camera 0 -> world for every frame of a KITTI-Raw drive."""
    return world.vehicle_to_world(drive.arclengths(), EGO_LATERAL, 0.0) @ rig.rect0_to_vehicle


def kitti_raw_camera_to_world(world: SyntheticWorld, drive: DriveSpec, rig: KittiRawRig, camera: int) -> np.ndarray:
    """(F, 4, 4) colour camera 2 or 3 -> world (the pinhole the image was rendered with)."""
    return kitti_raw_rect0_to_world(world, drive, rig) @ rig.cam_to_rect0(camera)
