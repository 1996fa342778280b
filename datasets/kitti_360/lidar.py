"""Velodyne scans: cached reading, frame changes and projected depth maps (REFERENCE 6.3, 7.1)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.io import read_velodyne
from datasets.kitti_360.layout import HINT_SCANS


@dataclass(frozen=True)
class LidarWindow:
    """``count`` consecutive scans, each in its own velodyne frame, and where each frame is."""

    frame_ids: list[int]  # real frame numbers of the scans (posed frames, clamped at the sequence end)
    scans: list[np.ndarray]  # count x (N_i, 4) float32 (x, y, z, reflectance), read-only
    velo_to_world: np.ndarray  # (count, 4, 4) float64
    velo_to_cam0: np.ndarray  # (count, 4, 4) float64, into the rectified cam 0 of the first frame


class ScanCache:
    """LRU cache of decoded scans keyed by path, so that overlapping 20-scan windows are cheap."""

    def __init__(self, max_scans: int = 64):
        self.max_scans = max_scans
        self._scans: OrderedDict[str, np.ndarray] = OrderedDict()

    def read(self, path: Path) -> np.ndarray:
        """(N, 4) float32 scan; read-only, shared between callers (copy before changing it)."""
        key = str(path)
        if key in self._scans:
            self._scans.move_to_end(key)
            return self._scans[key]
        scan = read_velodyne(path, HINT_SCANS)
        scan.flags.writeable = False
        self._scans[key] = scan
        if len(self._scans) > self.max_scans:
            self._scans.popitem(last=False)
        return scan

    def __len__(self) -> int:
        return len(self._scans)


def transform_scan(scan: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) transform to the xyz of an (N, 4) scan; reflectance is kept. Returns float32."""
    out = np.empty_like(scan, dtype=np.float32)
    xyz = scan[:, :3].astype(np.float64)
    out[:, :3] = xyz @ T[:3, :3].T + T[:3, 3]
    out[:, 3] = scan[:, 3]
    return out


def depth_map(scan: np.ndarray, velo_to_cam: np.ndarray, K_norm: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Lidar z-depth of a camera at ``image_size`` = (H, W), (1, H, W) float32, 0 where no point.

    Official rule: normalised projections ``u`` map to pixel ``round((u / 2 + 0.5) W)``; where
    several points share a pixel the nearest one is kept. Unlike the official code, points
    behind the camera are dropped first (there they could overwrite a valid pixel with 0).
    """
    H, W = image_size
    points = scan[:, :3].astype(np.float64) @ velo_to_cam[:3, :3].T + velo_to_cam[:3, 3]  # (N, 3)
    points = points[points[:, 2] > 0]
    projected = points @ K_norm.T
    z = projected[:, 2]
    u = np.round((projected[:, 0] / z * 0.5 + 0.5) * W)
    v = np.round((projected[:, 1] / z * 0.5 + 0.5) * H)
    inside = (u >= 0) & (v >= 0) & (u < W) & (v < H)
    flat = (v[inside] * W + u[inside]).astype(np.int64)
    z = z[inside]
    order = np.lexsort((z, flat))  # by pixel, then by depth: the first of each pixel is the nearest
    flat, z = flat[order], z[order]
    first = np.unique(flat, return_index=True)[1]
    depth = np.zeros(H * W, dtype=np.float32)
    depth[flat[first]] = z[first]
    return depth.reshape(1, H, W)
