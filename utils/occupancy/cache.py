"""On-disk cache of the model-independent lidar reference, one small file per frame.

The 20-scan reference dominates the cost of an occupancy evaluation and does not depend on the model,
so a second run (another checkpoint) reads it back. Files are keyed by dataset, sequence, frame and a
hash of every protocol parameter (and the dataset root), and are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from utils.occupancy.lidar import LidarReference

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the reference computation changes


def protocol_key(params: Mapping) -> str:
    """Short stable hash of the protocol parameters (JSON-serialisable values)."""
    text = json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class ReferenceCache:
    """``folder/<dataset>/<sequence>/<frame>_<key>.npz``; ``folder=None`` disables caching."""

    def __init__(self, folder: str | Path | None, dataset: str, params: Mapping):
        self.folder = None if folder is None else Path(folder) / dataset
        self.key = protocol_key(params)
        self.hits = 0
        self.misses = 0

    def path(self, sequence: str, frame_id: int) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / sequence / f"{int(frame_id):010d}_{self.key}.npz"

    def get(self, sequence: str, frame_id: int, compute: Callable[[], LidarReference]) -> LidarReference:
        """The cached reference of a frame, computing and storing it on a miss."""
        path = self.path(sequence, frame_id)
        if path is not None and path.is_file():
            self.hits += 1
            with np.load(path) as data:
                return LidarReference(
                    occupied=torch.from_numpy(data["occupied"]),
                    visible=torch.from_numpy(data["visible"]),
                    num_scans=int(data["num_scans"]),
                )
        self.misses += 1
        reference = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
            np.savez_compressed(
                tmp,
                occupied=reference.occupied.cpu().numpy(),
                visible=reference.visible.cpu().numpy(),
                num_scans=np.int64(reference.num_scans),
            )
            tmp.replace(path)
        return reference
