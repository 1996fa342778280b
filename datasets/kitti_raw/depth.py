"""KITTI Eigen-split depth ground truth from a velodyne scan (REFERENCE 6.5 and 7.2).

Pure functions, shared by the loader and the evaluation:

* :func:`velodyne_depth_map` projects a scan into a sparse depth map at the original resolution;
* :func:`garg_crop_mask` is the Garg et al. evaluation crop;
* :func:`eigen_depth` keeps ``1e-3 < d < 80`` inside the crop (the official ``eigen_depth=True``).
"""

from __future__ import annotations

import numpy as np

MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0
# Garg crop as fractions of the image size: rows [top, bottom), columns [left, right).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def velodyne_depth_map(points: np.ndarray, P_velo_to_image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sparse depth map (H, W) float32 from velodyne points (N, >=3), 0 where there is no point.

    Points behind the scanner (velodyne ``x < 0``) are dropped, as are points with non-positive projective
    depth. The depth is the third row of ``P_velo_to_image @ [x, y, z, 1]``; where several points land on
    one pixel, the nearest wins.
    """
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    xyz = xyz[xyz[:, 0] >= 0]
    homogeneous = np.concatenate([xyz, np.ones((len(xyz), 1))], axis=1)  # (N, 4)
    projected = homogeneous @ np.asarray(P_velo_to_image, dtype=np.float64).T  # (N, 3)
    depth = projected[:, 2]
    projected, depth = projected[depth > 0], depth[depth > 0]
    # KITTI devkit convention round(u) - 1: one pixel off 0-based pixel centres, kept for comparability.
    u = np.round(projected[:, 0] / depth).astype(np.int64) - 1
    v = np.round(projected[:, 1] / depth).astype(np.int64) - 1
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    u, v, depth = u[inside], v[inside], depth[inside]

    depth_map = np.full(height * width, np.inf)
    np.minimum.at(depth_map, v * width + u, depth)
    depth_map[np.isinf(depth_map)] = 0.0
    return depth_map.reshape(height, width).astype(np.float32)


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """(H, W) bool, True inside the Garg crop (bounds truncated to integers, as officially)."""
    top, bottom = int(GARG_CROP[0] * height), int(GARG_CROP[1] * height)
    left, right = int(GARG_CROP[2] * width), int(GARG_CROP[3] * width)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def eigen_depth(depth_map: np.ndarray) -> np.ndarray:
    """Zero every pixel outside ``MIN_DEPTH < d < MAX_DEPTH`` and the Garg crop; (H, W) -> (H, W)."""
    keep = (depth_map > MIN_DEPTH) & (depth_map < MAX_DEPTH) & garg_crop_mask(*depth_map.shape)
    return np.where(keep, depth_map, 0.0).astype(np.float32)
