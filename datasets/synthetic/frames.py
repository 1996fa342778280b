"""Render and write every sensor of one frame (KITTI-360 or KITTI-Raw) into its real file layout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch

from datasets.io import write_rgb, write_velodyne
from datasets.mei import MeiCamera
from datasets.synthetic import drives as D
from datasets.synthetic import render as R
from datasets.synthetic.root import SyntheticRoot
from datasets.synthetic.writers import RAW_DATE

CAMERA_RANGE = 150.0
LIDAR_RANGE = 120.0


def frame_paths(synthetic: SyntheticRoot, dataset: str, drive_index: int, frame: int) -> dict[str, Path]:
    """Output files of one frame, keyed by sensor (``image_00`` ... ``velodyne``)."""
    name = f"{frame:010d}"
    if dataset == "kitti_360":
        seq = synthetic.kitti360[drive_index].name
        base = synthetic.root / "KITTI-360"
        images = base / "data_2d_raw" / seq
        return {
            "image_00": images / "image_00" / "data_rect" / f"{name}.png",
            "image_01": images / "image_01" / "data_rect" / f"{name}.png",
            "image_02": images / "image_02" / "data_rgb" / f"{name}.png",
            "image_03": images / "image_03" / "data_rgb" / f"{name}.png",
            "velodyne": base / "data_3d_raw" / seq / "velodyne_points" / "data" / f"{name}.bin",
        }
    drive = synthetic.root / "KITTI-Raw" / RAW_DATE / synthetic.kitti_raw[drive_index].name
    return {
        "image_02": drive / "image_02" / "data" / f"{name}.jpg",
        "image_03": drive / "image_03" / "data" / f"{name}.jpg",
        "velodyne": drive / "velodyne_points" / "data" / f"{name}.bin",
    }


def lens_mask(camera: MeiCamera) -> np.ndarray:
    """(H, W) bool: pixels inside the MEI model's domain (undistorted radius <= 1 / sqrt(xi^2 - 1)).

    The boundary circle is pushed through the exact distortion and filled as a polygon, which
    matches :meth:`MeiCamera.unproject` validity without unprojecting every full-resolution pixel.
    """
    if camera.xi <= 1.0:
        return np.ones((camera.height, camera.width), dtype=bool)
    radius = 1.0 / np.sqrt(camera.xi**2 - 1.0)
    phi = torch.linspace(0.0, 2 * np.pi, 4096, dtype=torch.float64)
    xd, yd = camera.distort(radius * torch.cos(phi), radius * torch.sin(phi))
    polygon = torch.stack([camera.gamma1 * xd + camera.u0, camera.gamma2 * yd + camera.v0], -1).numpy()
    shift = 8
    mask = np.zeros((camera.height, camera.width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * (1 << shift)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=shift)
    # The fill is only right to a pixel at the rim: decide the pixels near it exactly.
    kernel = np.ones((5, 5), np.uint8)
    band = np.nonzero(cv2.dilate(mask, kernel) != cv2.erode(mask, kernel))
    pixels = torch.from_numpy(np.stack([band[1], band[0]], -1).astype(np.float64))
    mask[band] = camera.unproject(pixels)[1].numpy()
    return mask.astype(bool)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: results then do not depend on the machine's thread count (bit-exact
    determinism), and OpenMP workers do not spin under CPU contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class FrameRenderer:
    """Per-process renderer: builds each sensor's rays once, then renders frames on demand."""

    def __init__(self, synthetic: SyntheticRoot):
        self.synthetic = synthetic
        self.world = synthetic.world
        self._rays: dict[str, R.RaySet] = {}
        self._masks: dict[int, np.ndarray] = {}
        self._poses: dict[tuple[str, int, int], np.ndarray] = {}

    def _ray_set(self, key: str, build) -> R.RaySet:
        if key not in self._rays:
            self._rays[key] = build()
        return self._rays[key]

    def _camera_poses(self, dataset: str, drive_index: int, camera: int) -> np.ndarray:
        key = (dataset, drive_index, camera)
        if key not in self._poses:
            s = self.synthetic
            if dataset == "kitti_360":
                drive, rig = s.kitti360[drive_index], s.kitti360_rig
                if camera == 4:
                    self._poses[key] = D.kitti360_pose_to_world(self.world, drive) @ rig.velo_to_pose
                else:
                    self._poses[key] = D.kitti360_camera_to_world(self.world, drive, rig, camera)
            else:
                drive, rig = s.kitti_raw[drive_index], s.kitti_raw_rig
                if camera == 4:
                    vehicle = self.world.vehicle_to_world(drive.arclengths(), D.EGO_LATERAL, 0.0)
                    self._poses[key] = vehicle @ rig.velo_to_vehicle
                else:
                    self._poses[key] = D.kitti_raw_camera_to_world(self.world, drive, rig, camera)
        return self._poses[key]

    def render_fisheye(self, index: int, cam_to_world: np.ndarray) -> np.ndarray:
        """MEI fisheye image (H, W, 3) uint8, rendered at ``fisheye_render_scale`` and upsampled; black off-lens."""
        camera = self.synthetic.kitti360_rig.fisheyes[index]
        scale = self.synthetic.fisheye_render_scale
        rays = self._ray_set(f"fisheye_{index}", lambda: R.mei_rays(camera, scale))
        image = R.render_rgb(self.world, rays, cam_to_world, CAMERA_RANGE)
        if image.shape[:2] == (camera.height, camera.width):
            return image
        if index not in self._masks:
            self._masks[index] = lens_mask(camera)
        image = cv2.resize(image, (camera.width, camera.height), interpolation=cv2.INTER_LINEAR)
        return image * self._masks[index][..., None].astype(np.uint8)

    def render_images(self, dataset: str, drive_index: int, frame: int) -> dict[str, np.ndarray]:
        """All sensor outputs of one frame, keyed like :func:`frame_paths` (bit-exact for a given world)."""
        with single_thread():
            return self._render_images(dataset, drive_index, frame)

    def _render_images(self, dataset: str, drive_index: int, frame: int) -> dict[str, np.ndarray]:
        s = self.synthetic
        outputs = {}
        if dataset == "kitti_360":
            rig = s.kitti360_rig
            rays = self._ray_set("k360_perspective", lambda: R.pinhole_rays(rig.K, rig.width, rig.height))
            for camera in (0, 1):
                pose = self._camera_poses(dataset, drive_index, camera)[frame]
                outputs[f"image_{camera:02d}"] = R.render_rgb(self.world, rays, pose, CAMERA_RANGE)
            for camera in (2, 3):
                pose = self._camera_poses(dataset, drive_index, camera)[frame]
                outputs[f"image_{camera:02d}"] = self.render_fisheye(camera - 2, pose)
        else:
            rig = s.kitti_raw_rig
            K = rig.P_rect[2][:, :3]
            rays = self._ray_set("raw_perspective", lambda: R.pinhole_rays(K, rig.width, rig.height))
            for camera in (2, 3):
                pose = self._camera_poses(dataset, drive_index, camera)[frame]
                outputs[f"image_{camera:02d}"] = R.render_rgb(self.world, rays, pose, CAMERA_RANGE)
        lidar = self._ray_set(f"lidar_{dataset}", lambda: R.lidar_rays(rig.lidar_beams, rig.lidar_azimuth_step))
        velo_pose = self._camera_poses(dataset, drive_index, 4)[frame]
        outputs["velodyne"] = R.render_lidar(self.world, lidar, velo_pose, LIDAR_RANGE)
        return outputs

    def render(self, dataset: str, drive_index: int, frame: int) -> bool:
        """Render and write one frame unless all its files exist; True if it was rendered."""
        paths = frame_paths(self.synthetic, dataset, drive_index, frame)
        if all(p.is_file() for p in paths.values()):
            return False
        for key, value in self.render_images(dataset, drive_index, frame).items():
            if key == "velodyne":
                write_velodyne(paths[key], value)
            else:
                write_rgb(paths[key], value)
        return True
