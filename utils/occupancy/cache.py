"""On-disk cache of model-independent references, one small file per frame and kind.

What an evaluation compares a model against does not depend on the model: the 20-scan lidar reference, and on
the synthetic world the exact occupancy / visibility of the query points and the exact depth maps. They
dominate the cost of an evaluation, so a second run (another checkpoint) reads them back. Files are keyed by
dataset, sequence, frame, kind and a hash of every protocol parameter (and the dataset root), and are written
atomically.
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
from torch import Tensor

from utils.occupancy.lidar import LidarReference

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the reference computation changes


def protocol_key(params: Mapping) -> str:
    """Short stable hash of the protocol parameters (JSON-serialisable values)."""
    text = json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class ReferenceCache:
    """``folder/<dataset>/<sequence>/<frame>_<kind>_<key>.npz``; ``folder=None`` disables caching.

    ``hits`` / ``misses`` count every kind; ``counts`` has them per kind.
    """

    def __init__(self, folder: str | Path | None, dataset: str, params: Mapping):
        self.folder = None if folder is None else Path(folder) / dataset
        self.key = protocol_key(params)
        self.counts: dict[str, dict[str, int]] = {}

    @property
    def hits(self) -> int:
        return sum(c["hits"] for c in self.counts.values())

    @property
    def misses(self) -> int:
        return sum(c["misses"] for c in self.counts.values())

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "key": self.key, "by_kind": self.counts}

    def path(self, sequence: str, frame_id: int, kind: str = "lidar") -> Path | None:
        if self.folder is None:
            return None
        return self.folder / sequence / f"{int(frame_id):010d}_{kind}_{self.key}.npz"

    def tensors(
        self, kind: str, sequence: str, frame_id: int, compute: Callable[[], dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """The cached tensors of ``kind`` for a frame, computing and storing them on a miss."""
        count = self.counts.setdefault(kind, {"hits": 0, "misses": 0})
        path = self.path(sequence, frame_id, kind)
        if path is not None and path.is_file():
            count["hits"] += 1
            with np.load(path) as data:
                return {name: torch.from_numpy(data[name]) for name in data.files}
        count["misses"] += 1
        tensors = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, **{name: t.cpu().numpy() for name, t in tensors.items()})
            tmp.replace(path)
        return tensors

    def get(self, sequence: str, frame_id: int, compute: Callable[[], LidarReference]) -> LidarReference:
        """The cached lidar reference of a frame, computing and storing it on a miss."""

        def as_tensors() -> dict[str, Tensor]:
            reference = compute()
            return {
                "occupied": reference.occupied,
                "visible": reference.visible,
                "num_scans": torch.tensor(reference.num_scans),
            }

        data = self.tensors("lidar", sequence, frame_id, as_tensors)
        return LidarReference(occupied=data["occupied"], visible=data["visible"], num_scans=int(data["num_scans"]))
