"""A generated synthetic root reloaded from its ``world.json``: the exact world, the drives and the rigs.

Benchmarks ask it for the exact truth (:meth:`SyntheticRoot.occupied`, :meth:`SyntheticRoot.visible`,
:meth:`SyntheticRoot.kitti_raw_depth`) instead of reaching into the generator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from datasets.synthetic import drives as D
from datasets.synthetic.rigs import Kitti360Rig, KittiRawRig, kitti360_rig, kitti_raw_rig
from datasets.synthetic.world import SyntheticWorld, WorldParams


@dataclass
class SyntheticRoot:
    """Everything needed to rebuild the ground truth of a generated root (read from ``world.json``)."""

    root: Path
    world: SyntheticWorld
    kitti360: list[D.DriveSpec]
    kitti_raw: list[D.DriveSpec]
    kitti360_rig: Kitti360Rig
    kitti_raw_rig: KittiRawRig
    fisheye_render_scale: float

    @classmethod
    def load(cls, root: Path) -> SyntheticRoot:
        meta = json.loads((Path(root) / "world.json").read_text())
        return cls(
            root=Path(root),
            world=SyntheticWorld(WorldParams(**meta["params"])),
            kitti360=[D.DriveSpec(**d) for d in meta["kitti_360"]["sequences"]],
            kitti_raw=[D.DriveSpec(**d) for d in meta["kitti_raw"]["drives"]],
            kitti360_rig=kitti360_rig(meta["small"]),
            kitti_raw_rig=kitti_raw_rig(meta["small"]),
            fisheye_render_scale=meta["fisheye_render_scale"],
        )

    def drive(self, name: str) -> D.DriveSpec:
        """The KITTI-360 sequence or KITTI-Raw drive called ``name``."""
        for spec in [*self.kitti360, *self.kitti_raw]:
            if spec.name == name:
                return spec
        raise KeyError(f"No synthetic drive named {name!r}")

    # --- exact ground truth, for benchmarks against the world itself -------------------------------------
    def occupied(self, points_world: Tensor) -> Tensor:
        """(P,) bool: the world points (P, 3) lie inside a solid."""
        return self.world.occupied(points_world)

    def visible(self, points_world: Tensor, camera_centre: Tensor) -> Tensor:
        """(P,) bool: nothing of the world lies between the camera centre (3,) and each point (P, 3)."""
        offsets = points_world.to(torch.float32) - camera_centre.to(torch.float32)
        dist = offsets.norm(dim=-1)
        hits = self.world.cast(camera_centre.to(torch.float32).expand_as(offsets), offsets / dist[:, None])
        return hits.distance >= dist

    def kitti_raw_depth(self, sequence: str, frame_id: int, is_right: bool, pixels: Tensor) -> Tensor:
        """Exact camera z-depth (N,) (inf where no surface) at pixel centres ``pixels`` (N, 2) as (u, v) of the
        KITTI-Raw colour camera 2 (left) or 3 (right) of drive ``<date>/<sequence>`` at ``frame_id``."""
        rig = self.kitti_raw_rig
        camera = 3 if is_right else 2
        drive = self.drive(sequence.split("/")[-1])
        cam_to_world = torch.from_numpy(D.kitti_raw_camera_to_world(self.world, drive, rig, camera)[frame_id])
        K = torch.from_numpy(rig.P_rect[camera][:, :3])
        return self.world.depth_pinhole(cam_to_world, K, pixels.to(torch.float64))
