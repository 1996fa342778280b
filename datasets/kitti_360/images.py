"""Reading views at the target size: from the preprocessing cache, or resized / resampled on the fly.

Decision 6: the cache is used where it is complete, otherwise images are processed on the fly,
and the choice is logged once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from datasets.calibration import DatasetError
from datasets.io import read_rgb
from datasets.kitti_360.calibration import Kitti360Calibration
from datasets.kitti_360.fisheye import FisheyeModel, antialias_factor, fisheye_sampling_grid, resample_fisheye
from datasets.kitti_360.layout import HINT_IMAGES, PERSPECTIVE_CAMERAS, Kitti360Layout, frame_name, preprocess_hint

logger = logging.getLogger(__name__)


def resize_perspective(image: np.ndarray, image_size: tuple[int, int], antialias: bool = False) -> np.ndarray:
    """uint8 RGB (h, w, 3) -> float32 colours in [0, 1] at ``image_size`` = (H, W).

    cv2 INTER_LINEAR as officially; ``antialias``: INTER_AREA, the mean over each target pixel's footprint, which
    does not alias when shrinking by more than 2 (INTER_LINEAR reads 2 x 2 source pixels per target pixel and
    skips the rest). Both place target pixel ``j`` at source ``(j + 0.5) w / W - 0.5``.
    """
    colors = image.astype(np.float32) / 255.0
    H, W = image_size
    if colors.shape[:2] == (H, W):
        return colors
    return cv2.resize(colors, (W, H), interpolation=cv2.INTER_AREA if antialias else cv2.INTER_LINEAR)


def fisheye_grid(
    calibration: Kitti360Calibration,
    camera: str,
    image_size: tuple[int, int],
    model: FisheyeModel,
    antialias: bool,
) -> tuple[Tensor, int]:
    """The sampling grid of fisheye ``camera`` at ``image_size`` and its supersampling factor (1 unless
    ``antialias``, then enough samples per target pixel that no fisheye pixel is skipped)."""
    mei, rotation = calibration.fisheye[camera], calibration.fisheye_rotation[camera]
    grid = fisheye_sampling_grid(calibration.K_norm, image_size, mei, rotation, model)
    if not antialias:
        return grid, 1
    supersample = antialias_factor(grid, mei)
    if supersample > 1:
        grid = fisheye_sampling_grid(calibration.K_norm, image_size, mei, rotation, model, supersample)
    return grid, supersample


def to_uint8(colors: np.ndarray) -> np.ndarray:
    """float colours in [0, 1] -> uint8."""
    return np.clip(np.round(colors * 255.0), 0, 255).astype(np.uint8)


def list_frames(folder: Path, suffix: str = ".png") -> set[str]:
    """File names in ``folder`` ending with ``suffix`` (empty if the folder does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.name.endswith(suffix)}
    except FileNotFoundError:
        return set()


class ViewReader:
    """Reads one view of one frame as float32 colours (3, H, W) in [0, 1]."""

    def __init__(
        self,
        layout: Kitti360Layout,
        calibration: Kitti360Calibration,
        image_size: tuple[int, int],
        fisheye_rotation: tuple[float, float],
        fisheye_model: FisheyeModel,
        preprocessed: bool | str,
        antialias: bool = False,
    ):
        if preprocessed not in (True, False, "auto"):
            raise ValueError(f"preprocessed must be True, False or 'auto', got {preprocessed!r}")
        self.layout = layout
        self.calibration = calibration
        self.image_size = image_size
        self.fisheye_rotation = fisheye_rotation
        self.fisheye_model = fisheye_model
        self.preprocessed = preprocessed
        self.antialias = antialias
        self._use_cache: dict[tuple[str, str], bool] = {}
        self._grids: dict[str, tuple[Tensor, int]] = {}  # per fisheye camera: sampling grid, supersampling
        self._hint = preprocess_hint(layout.root, image_size, fisheye_rotation, fisheye_model, antialias)

    def cache_folder(self, sequence: str, camera: str) -> Path:
        return self.layout.cache_folder(
            sequence, camera, self.image_size, self.fisheye_rotation, self.fisheye_model, self.antialias
        )

    def choose_sources(self, needed: dict[tuple[str, str], set[int]]) -> None:
        """Decide, per (sequence, camera), cache or on the fly; log the choice once.

        ``needed`` maps (sequence, camera) to the frame numbers the samples will read.
        """
        cached, live = [], []
        for (sequence, camera), frames in sorted(needed.items()):
            use = False
            if self.preprocessed is not False:
                folder = self.cache_folder(sequence, camera)
                present = list_frames(folder)
                missing = sorted(f for f in frames if frame_name(f) not in present)
                if missing and self.preprocessed is True:
                    raise DatasetError(
                        f"Missing preprocessed image: {folder / frame_name(missing[0])} "
                        f"({len(missing)} of {len(frames)} needed frames missing)\n{self._hint}"
                    )
                use = not missing
            self._use_cache[(sequence, camera)] = use
            (cached if use else live).append(f"{sequence}/image_{camera}")
        if live:
            logger.info(
                "KITTI-360: resizing/resampling on the fly for %d of %d (sequence, camera) pairs (%s); "
                "preprocessing makes loading faster. %s",
                len(live),
                len(needed),
                ", ".join(live[:4]) + (", ..." if len(live) > 4 else ""),
                self._hint,
            )
        if cached:
            logger.info(
                "KITTI-360: using the preprocessed cache for %d of %d (sequence, camera) pairs",
                len(cached),
                len(needed),
            )

    def uses_cache(self, sequence: str, camera: str) -> bool:
        return self._use_cache.get((sequence, camera), False)

    def fisheye_grid(self, camera: str) -> tuple[Tensor, int]:
        """The sampling grid of a fisheye camera and its supersampling (computed once, same for every frame)."""
        if camera not in self._grids:
            self._grids[camera] = fisheye_grid(
                self.calibration, camera, self.image_size, self.fisheye_model, self.antialias
            )
        return self._grids[camera]

    def read(self, sequence: str, camera: str, frame_id: int) -> Tensor:
        """Colours (3, H, W) float32 in [0, 1] of camera ``camera`` at frame number ``frame_id``."""
        H, W = self.image_size
        if self.uses_cache(sequence, camera):
            path = self.cache_folder(sequence, camera) / frame_name(frame_id)
            image = read_rgb(path, self._hint)
            if image.shape[:2] != (H, W):
                raise DatasetError(f"{path}: preprocessed image is {image.shape[1]}x{image.shape[0]}, expected {W}x{H}")
            return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        path = self.layout.raw_folder(sequence, camera) / frame_name(frame_id)
        image = read_rgb(path, HINT_IMAGES)
        if camera in PERSPECTIVE_CAMERAS:
            self.check_size(path, image, self.calibration.perspective_size, "perspective.txt (S_rect_00)")
            return torch.from_numpy(resize_perspective(image, self.image_size, self.antialias)).permute(2, 0, 1)
        mei = self.calibration.fisheye[camera]
        self.check_size(path, image, (mei.height, mei.width), f"image_{camera}.yaml")
        colors = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        return resample_fisheye(colors, *self.fisheye_grid(camera))

    @staticmethod
    def check_size(path: Path, image: np.ndarray, size: tuple[int, int], source: str) -> None:
        """Intrinsics and sampling grids hold for the calibrated size only."""
        if image.shape[:2] != tuple(size):
            raise DatasetError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} but calibration/{source} says {size[1]}x{size[0]}"
            )
