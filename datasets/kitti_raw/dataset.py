"""KITTI-Raw loader (REFERENCE 6.5): stereo colour frames, ORB-SLAM3 poses, optional Eigen depth GT.

A sample anchored on the left camera has the views ``[L(t), L(t+1), R(t), R(t+1)]`` (``frame_count=2``,
stereo); a right-anchored split line (``r``) swaps the roles: ``[R(t), R(t+1), L(t), L(t+1)]``. Frame ids
are clamped to the drive. Differences from the official loader, on purpose: ``r`` lines really are
right-anchored, the image size comes from the calibration/images instead of a per-date table, only the
dates a split references are opened, and every drive of the split is loaded (no single-drive ``[32]``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.augmentation import ColorJitterParams
from datasets.calibration import DatasetError, require_dir
from datasets.io import read_rgb, read_velodyne
from datasets.kitti_raw.calibration import KittiRawCalibration, load_calibration
from datasets.kitti_raw.depth import eigen_depth, velodyne_depth_map
from datasets.kitti_raw.layout import (
    DATA_HINT,
    Drive,
    discover_sequences,
    open_drive,
    resolve_repo_path,
)
from datasets.kitti_raw.split import SplitEntry, read_split
from datasets.sample import Sample
from utils.geometry import normalize_intrinsics

log = logging.getLogger(__name__)


class KittiRawDataset(Dataset):
    """KITTI-Raw samples as :class:`~datasets.sample.Sample`.

    Args:
        data_path: the KITTI-Raw root (``<date>/<date>_drive_XXXX_sync/...``).
        pose_path: root of the ORB-SLAM3 pose files ``<date>/<drive>.txt``.
        split_path: a split file (lines ``<date>/<drive> <frame> <l|r>``); None = every frame (left-anchored)
            of every drive found that has a pose file. Relative pose/split paths missing from the working
            directory are looked up under the repository.
        image_size: output (H, W); images are resized without cropping.
        frame_count: consecutive frames per camera, ``[t, t+1, ...]``.
        return_stereo: also return the other camera's frames.
        color_aug: colour jitter, one draw per sample for all views (training only).
        return_depth: velodyne depth GT of view 0 at the original resolution (Eigen filter + Garg crop);
            projected with P_rect_03 for right-anchored samples, so it always belongs to view 0.
        antialias: resize with cv2 INTER_AREA (the mean over each pixel's footprint) instead of the official
            INTER_LINEAR, which aliases when shrinking by more than 2 (the synthetic configs' 64 x 192).
    """

    def __init__(
        self,
        data_path: str | Path,
        pose_path: str | Path = "datasets/kitti_raw/orb-slam_poses",
        split_path: str | Path | None = None,
        image_size: tuple[int, int] = (192, 640),
        frame_count: int = 2,
        return_stereo: bool = True,
        color_aug: bool = False,
        return_depth: bool = False,
        antialias: bool = False,
    ) -> None:
        if frame_count < 1:
            raise ValueError(f"frame_count must be >= 1, got {frame_count}")
        self.data_path = require_dir(Path(data_path), DATA_HINT)
        self.split_path = split_path
        self.pose_root = resolve_repo_path(pose_path)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.frame_count = int(frame_count)
        self.return_stereo = bool(return_stereo)
        self.color_aug = bool(color_aug)
        self.return_depth = bool(return_depth)
        self.antialias = bool(antialias)
        self._calibrations: dict[str, KittiRawCalibration] = {}

        if split_path is None:
            sequences = discover_sequences(self.data_path, self.pose_root)
            self._drives = self._open_drives(sequences, right_anchored=set())
            self._entries = [
                SplitEntry(sequence, frame, False)
                for sequence in sequences
                for frame in range(self._drives[sequence].num_frames)
            ]
        else:
            split_path = resolve_repo_path(split_path)
            self._entries = read_split(split_path)
            sequences = sorted({e.sequence for e in self._entries})
            right_anchored = {e.sequence for e in self._entries if e.is_right}
            self._drives = self._open_drives(sequences, right_anchored)
            for entry in self._entries:
                if entry.frame_id >= self._drives[entry.sequence].num_frames:
                    raise DatasetError(
                        f"{split_path}: frame {entry.frame_id} of {entry.sequence} is out of range "
                        f"(the drive has {self._drives[entry.sequence].num_frames} frames)"
                    )
        log.info(
            "KittiRawDataset: %d samples from %d drives (split %s, poses %s)",
            len(self._entries),
            len(self._drives),
            split_path,
            self.pose_root,
        )

    def _open_drives(self, sequences: list[str], right_anchored: set[str]) -> dict[str, Drive]:
        drives = {}
        for sequence in sequences:
            need_right = self.return_stereo or sequence in right_anchored
            drives[sequence] = open_drive(self.data_path, self.pose_root, sequence, need_right)
            self.calibration(sequence.split("/")[0])
        return drives

    def calibration(self, date: str) -> KittiRawCalibration:
        """The calibration of one date, read on first use and cached."""
        if date not in self._calibrations:
            self._calibrations[date] = load_calibration(require_dir(self.data_path / date, DATA_HINT))
        return self._calibrations[date]

    @property
    def entries(self) -> list[SplitEntry]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def view_layout(self, entry: SplitEntry) -> list[tuple[bool, int]]:
        """``(is_right, frame)`` per view: anchor camera frames first, then the other camera's."""
        drive = self._drives[entry.sequence]
        ids = [min(entry.frame_id + k, drive.num_frames - 1) for k in range(self.frame_count)]
        sides = [entry.is_right, not entry.is_right] if self.return_stereo else [entry.is_right]
        return [(side, frame) for side in sides for frame in ids]

    def __getitem__(self, index: int) -> Sample:
        entry = self._entries[index]
        drive = self._drives[entry.sequence]
        calib = self.calibration(entry.date)
        views = self.view_layout(entry)

        paths = [drive.image_path(side, frame) for side, frame in views]
        raw = [read_rgb(path, DATA_HINT) for path in paths]
        height, width = calib.image_size or raw[0].shape[:2]
        for path, image in zip(paths, raw, strict=True):
            if image.shape[:2] != (height, width):
                raise DatasetError(
                    f"{path} is {image.shape[1]}x{image.shape[0]} but the calibration expects {width}x{height}: "
                    "images must keep the original rectified resolution"
                )
        images = torch.from_numpy(np.stack([self._resize(image) for image in raw])).permute(0, 3, 1, 2)
        if self.color_aug:
            images = ColorJitterParams.sample().apply(images)
        images = images * 2.0 - 1.0  # (V, 3, H, W) in [-1, 1]

        K_norm = normalize_intrinsics(torch.from_numpy(calib.intrinsics), width, height).float()
        cam_to_world = np.stack([drive.cam0_to_world[frame] @ calib.cam_to_rect_cam0(side) for side, frame in views])

        depth = None
        if self.return_depth:
            scan = read_velodyne(drive.velodyne_path(entry.frame_id), DATA_HINT)
            depth_map = velodyne_depth_map(scan, calib.velo_to_image(entry.is_right), height, width)
            depth = torch.from_numpy(eigen_depth(depth_map))[None]  # (1, H_orig, W_orig)

        return Sample(
            images=images.contiguous(),
            K_norm=K_norm.expand(len(views), 3, 3).clone(),
            cam_to_world=torch.from_numpy(cam_to_world).float(),
            sequence=entry.sequence,
            frame_id=entry.frame_id,
            is_right=entry.is_right,
            index=index,
            depth=depth,
        )

    def _resize(self, image: np.ndarray) -> np.ndarray:
        """(H0, W0, 3) uint8 -> (H, W, 3) float32 in [0, 1], bilinear (area with ``antialias``), no crop."""
        colors = image.astype(np.float32) / 255.0
        height, width = self.image_size
        if colors.shape[:2] != (height, width):
            interpolation = cv2.INTER_AREA if self.antialias else cv2.INTER_LINEAR
            colors = cv2.resize(colors, (width, height), interpolation=interpolation)
        return colors
