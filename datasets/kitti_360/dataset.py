"""KITTI-360 loader: posed perspective and fisheye views in the official order (REFERENCE 6.1-6.4).

A sample anchored on posed frame index ``t`` of a sequence holds, for ``frame_count=2`` with
stereo and fisheyes (right-anchored samples swap the roles of left and right)::

    [pL(t), pL(t+1), pR(t), pR(t+1), fL(t+10), fL(t+11), fR(t+10), fR(t+11)]

Frame indices count *posed* frames (frames missing from ``poses.txt`` are skipped, counted and
logged) and are clamped at the end of the sequence. Perspective frames are ``[t, t+1]``
(decision 2: the KDBTS ``[t, t]`` duplication is a bug). Fisheyes are resampled to a virtual
pinhole sharing the perspective ``K_norm``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.augmentation import ColorJitterParams
from datasets.calibration import DatasetError, require_dir
from datasets.kitti_360.calibration import load_calibration, load_poses
from datasets.kitti_360.fisheye import FisheyeModel
from datasets.kitti_360.images import ViewReader, list_frames
from datasets.kitti_360.layout import HINT_CALIBRATION, HINT_IMAGES, Kitti360Layout, frame_name
from datasets.kitti_360.lidar import LidarWindow, ScanCache, depth_map, transform_scan
from datasets.kitti_360.splits import read_split
from datasets.sample import Sample
from utils.geometry import invert_rigid

logger = logging.getLogger(__name__)


class Kitti360Dataset(Dataset):
    """KITTI-360 samples (:class:`datasets.sample.Sample`) read from the official on-disk layout.

    Args (the Hydra config keys):
        data_path: KITTI-360 root (``calibration/``, ``data_2d_raw/``, ``data_3d_raw/``, ``data_poses/``).
        pose_path: folder of ``<seq>/poses.txt``; default ``<data_path>/data_poses``.
        split_path: split file (``<seq> <frame> <l|r>`` lines); None = every posed frame, left-anchored.
        image_size: (H, W) of every returned view.
        frame_count: consecutive posed frames per camera.
        return_stereo / return_fisheye: include the other-side cameras / the fisheye virtual pinholes.
        fisheye_offset: posed frames between the anchor and the first fisheye frame.
        fisheye_rotation: (yaw, pitch) degrees of the virtual pinhole in the left fisheye.
        fisheye_model: "official" (as the checkpoints were trained) or "exact" (MEI with p1, p2).
        color_aug: one colour jitter per sample, shared by all views (training only).
        return_depth: add the lidar depth of view 0 at ``image_size``.
        preprocessed: True = the cache must be complete, False = never use it, "auto" = use it
            for every (sequence, camera) whose needed frames are all cached.
        max_cached_scans: size of the LRU cache of decoded velodyne scans.
    """

    def __init__(
        self,
        data_path: str | Path,
        pose_path: str | Path | None = None,
        split_path: str | Path | None = None,
        image_size: tuple[int, int] = (192, 640),
        frame_count: int = 2,
        return_stereo: bool = True,
        return_fisheye: bool = True,
        fisheye_offset: int = 10,
        fisheye_rotation: tuple[float, float] = (0.0, -15.0),
        fisheye_model: FisheyeModel = "official",
        color_aug: bool = False,
        return_depth: bool = False,
        preprocessed: bool | Literal["auto"] = "auto",
        max_cached_scans: int = 64,
        antialias: bool = False,
    ):
        if fisheye_model not in ("official", "exact"):
            raise ValueError(f"fisheye_model must be 'official' or 'exact', got {fisheye_model!r}")
        if frame_count < 1:
            raise ValueError(f"frame_count must be >= 1, got {frame_count}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.frame_count = frame_count
        self.return_stereo = return_stereo
        self.return_fisheye = return_fisheye
        self.fisheye_offset = fisheye_offset
        self.fisheye_rotation = (float(fisheye_rotation[0]), float(fisheye_rotation[1]))
        self.color_aug = color_aug
        self.return_depth = return_depth
        self.antialias = bool(antialias)

        self.layout = Kitti360Layout(Path(data_path), None if pose_path is None else Path(pose_path))
        self.data_path, self.split_path = self.layout.root, split_path
        require_dir(self.layout.root, "Download KITTI-360 and point data_path at its root folder.")
        require_dir(self.layout.calibration, HINT_CALIBRATION)
        require_dir(self.layout.images_root, HINT_IMAGES)
        self.calibration = load_calibration(self.layout.calibration, self.fisheye_rotation)

        split = read_split(Path(split_path)) if split_path is not None else None
        sequences = sorted({e.sequence for e in split}) if split is not None else self.layout.sequences()
        self._frame_ids: dict[str, np.ndarray] = {}  # posed frame numbers, ascending
        self._index_of: dict[str, dict[int, int]] = {}  # frame number -> posed index
        self._imu_to_world: dict[str, torch.Tensor] = {}  # (N, 4, 4) float64
        for sequence in sequences:
            self._load_sequence(sequence)

        if split is None:
            self._datapoints = [(s, i, False) for s in sequences for i in range(len(self._frame_ids[s]))]
        else:
            self._datapoints = self._datapoints_from_split(split)

        self._reader = ViewReader(
            self.layout,
            self.calibration,
            self.image_size,
            self.fisheye_rotation,
            fisheye_model,
            preprocessed,
            antialias,
        )
        self._reader.choose_sources(self._needed_frames())
        self._scans = ScanCache(max_cached_scans)

    # ---------------------------------------------------------------- construction
    def _load_sequence(self, sequence: str) -> None:
        require_dir(self.layout.images_root / sequence, HINT_IMAGES)
        ids, imu_to_world = load_poses(self.layout.pose_file(sequence))  # raises naming a missing file
        self._frame_ids[sequence] = ids
        self._index_of[sequence] = {int(f): i for i, f in enumerate(ids)}
        self._imu_to_world[sequence] = imu_to_world
        cache = self.layout.cache_folder(
            sequence, "00", self.image_size, self.fisheye_rotation, antialias=self.antialias
        )
        on_disk = list_frames(self.layout.raw_folder(sequence, "00")) | list_frames(cache)
        posed = {frame_name(int(f)) for f in ids}
        logger.info(
            "KITTI-360 %s: %d posed frames; %d of %d image_00 frames have no pose and are skipped",
            sequence,
            len(ids),
            len(on_disk - posed),
            len(on_disk),
        )

    def _datapoints_from_split(self, split) -> list[tuple[str, int, bool]]:
        datapoints, unposed = [], defaultdict(int)
        for entry in split:
            index = self._index_of[entry.sequence].get(entry.frame_id)
            if index is None:
                unposed[entry.sequence] += 1
            else:
                datapoints.append((entry.sequence, index, entry.is_right))
        for sequence, count in sorted(unposed.items()):
            logger.warning("KITTI-360 %s: skipped %d split lines whose frame has no pose", sequence, count)
        return datapoints

    def _needed_frames(self) -> dict[tuple[str, str], set[int]]:
        """(sequence, camera) -> frame numbers that some sample reads (decides cache use)."""
        needed: dict[tuple[str, str], set[int]] = defaultdict(set)
        anchors: dict[tuple[str, bool], set[int]] = defaultdict(set)
        for sequence, index, is_right in self._datapoints:
            anchors[(sequence, is_right)].add(index)
        for (sequence, is_right), indices in anchors.items():
            anchor = np.fromiter(indices, dtype=np.int64)
            for camera, offset in self._view_layout(is_right):
                for k in range(self.frame_count):
                    frames = self._frame_ids[sequence][self._clamp(sequence, anchor + offset + k)]
                    needed[(sequence, camera)].update(int(f) for f in frames)
        return needed

    # ---------------------------------------------------------------- views
    def _view_layout(self, is_right: bool) -> list[tuple[str, int]]:
        """(camera, frame offset) per camera group, in the official order."""
        main, other = ("01", "00") if is_right else ("00", "01")
        fish_main, fish_other = ("03", "02") if is_right else ("02", "03")
        groups = [(main, 0)] + ([(other, 0)] if self.return_stereo else [])
        if self.return_fisheye:
            groups += [(fish_main, self.fisheye_offset)]
            groups += [(fish_other, self.fisheye_offset)] if self.return_stereo else []
        return groups

    def _clamp(self, sequence: str, index):
        return np.clip(index, 0, len(self._frame_ids[sequence]) - 1)

    def views(self, index: int) -> list[tuple[str, int]]:
        """(camera, frame number) of every view of sample ``index``, in the official order."""
        sequence, anchor, is_right = self._datapoints[index]
        ids = self._frame_ids[sequence]
        return [
            (camera, int(ids[self._clamp(sequence, anchor + offset + k)]))
            for camera, offset in self._view_layout(is_right)
            for k in range(self.frame_count)
        ]

    def cam_to_world(self, sequence: str, frame_id: int, camera: str) -> torch.Tensor:
        """(4, 4) float64 rectified / virtual camera -> world at a posed frame."""
        return (
            self._imu_to_world[sequence][self._posed_index(sequence, frame_id)] @ self.calibration.cam_to_pose[camera]
        )

    def _posed_index(self, sequence: str, frame_id: int) -> int:
        if sequence not in self._index_of:
            raise DatasetError(f"KITTI-360: sequence {sequence!r} is not loaded (loaded: {sorted(self._index_of)})")
        index = self._index_of[sequence].get(int(frame_id))
        if index is None:
            raise DatasetError(
                f"KITTI-360 {sequence}: frame {frame_id} has no pose in {self.layout.pose_file(sequence)}"
            )
        return index

    # ---------------------------------------------------------------- samples
    def __len__(self) -> int:
        return len(self._datapoints)

    def __getitem__(self, index: int) -> Sample:
        sequence, anchor, is_right = self._datapoints[index]
        views = self.views(index)
        colors = torch.stack([self._reader.read(sequence, camera, frame) for camera, frame in views])  # (V, 3, H, W)
        if self.color_aug:
            colors = ColorJitterParams.sample().apply(colors)
        cam_to_world = torch.stack([self.cam_to_world(sequence, frame, camera) for camera, frame in views])
        V = len(views)
        depth = None
        if self.return_depth:
            depth = torch.from_numpy(self.depth(sequence, views[0][1], views[0][0]))
        return Sample(
            images=(colors * 2.0 - 1.0).to(torch.float32),  # (V, 3, H, W)
            K_norm=self.calibration.K_norm.to(torch.float32).expand(V, 3, 3).clone(),  # (V, 3, 3)
            cam_to_world=cam_to_world.to(torch.float32),  # (V, 4, 4)
            sequence=sequence,
            frame_id=int(self._frame_ids[sequence][anchor]),
            is_right=is_right,
            index=index,
            depth=depth,
            extras={"view_frame_ids": torch.tensor([f for _, f in views], dtype=torch.int64)},
        )

    # ---------------------------------------------------------------- lidar
    def load_lidar(self, sequence: str, frame_id: int, frame: Literal["velodyne", "cam0"] = "velodyne") -> np.ndarray:
        """Scan of ``frame_id``, (N, 4) float32 (x, y, z, reflectance), in its velodyne or rectified cam 0 frame."""
        scan = self._scans.read(self.layout.scan_file(sequence, frame_id))
        if frame == "velodyne":
            return scan.copy()
        if frame == "cam0":
            return transform_scan(scan, self.calibration.velo_to_rect00.numpy())
        raise ValueError(f"frame must be 'velodyne' or 'cam0', got {frame!r}")

    def load_lidar_window(self, sequence: str, frame_id: int, count: int = 20) -> LidarWindow:
        """Scans of the ``count`` posed frames starting at ``frame_id`` (clamped at the sequence end)."""
        first = self._posed_index(sequence, frame_id)
        indices = self._clamp(sequence, first + np.arange(count))
        frame_ids = [int(f) for f in self._frame_ids[sequence][indices]]
        scans = [self._scans.read(self.layout.scan_file(sequence, f)) for f in frame_ids]
        velo_to_world = self._imu_to_world[sequence][torch.as_tensor(indices)] @ self.calibration.velo_to_pose
        world_to_cam0 = invert_rigid(self.cam_to_world(sequence, frame_id, "00"))
        return LidarWindow(frame_ids, scans, velo_to_world.numpy(), (world_to_cam0 @ velo_to_world).numpy())

    def depth(self, sequence: str, frame_id: int, camera: str = "00") -> np.ndarray:
        """Lidar depth of a rectified perspective camera at ``image_size``, (1, H, W) float32, 0 = none."""
        velo_to_cam = invert_rigid(self.calibration.cam_to_pose[camera]) @ self.calibration.velo_to_pose
        scan = self._scans.read(self.layout.scan_file(sequence, frame_id))
        return depth_map(scan, velo_to_cam.numpy(), self.calibration.K_norm.numpy(), self.image_size)
