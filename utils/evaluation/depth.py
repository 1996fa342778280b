"""The KITTI Eigen depth protocol for one frame (REFERENCE 7.2), plus the exact synthetic benchmark.

Full-image render of view 0, distance -> z, nearest upsampling to the ground-truth size (the Garg crop is
already in the ground truth), optional per-image scaling, clamp to [1e-3, 80]. On the synthetic world,
``analytic`` also scores the prediction against the exact dense depth at the same resolution (Eigen range
and Garg crop applied the same way).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from datasets.kitti_raw.depth import eigen_depth
from datasets.sample import Sample
from datasets.synthetic.drives import kitti_raw_camera_to_world
from utils.evaluation.common import encode_views, render_depth
from utils.metrics import depth_metrics, resize_to


class DepthEvaluator:
    """Scores one frame at a time against lidar ground truth (and the exact synthetic depth when given)."""

    def __init__(self, cfg, synthetic=None):
        self.cfg = cfg
        self.synthetic = synthetic

    @torch.no_grad()
    def frame(self, model: nn.Module, batch: Sample, head: str, encoder_views: list[int]) -> tuple[dict, None]:
        if batch.depth is None:
            raise ValueError("depth evaluation needs ground truth: build the dataset with return_depth=true")
        scene = encode_views(model, batch, encoder_views)
        depth = render_depth(model, batch, scene, head, self.cfg.ray_chunk_size).float().cpu()  # (1, H, W)
        gt = batch.depth[:, 0].float().cpu()  # (1, H_gt, W_gt)
        pred = resize_to(depth, tuple(gt.shape[-2:]))
        row = {f"lidar/model/{k}": v.item() for k, v in depth_metrics(pred, gt, self.cfg.scaling).items()}
        if self.synthetic is not None:
            exact = self.exact_depth(batch.sequence[0], batch.frame_id[0], batch.is_right[0], tuple(gt.shape[-2:]))
            metrics = depth_metrics(pred, exact[None], self.cfg.scaling)
            row.update({f"analytic/model/{k}": v.item() for k, v in metrics.items()})
        return row, None

    def exact_depth(self, sequence: str, frame_id: int, is_right: bool, size: tuple[int, int]) -> Tensor:
        """Exact z-depth (H, W) of the synthetic KITTI-Raw input camera, Eigen range and Garg crop, 0 elsewhere."""
        synthetic = self.synthetic
        rig = synthetic.kitti_raw_rig
        if (rig.height, rig.width) != size:
            raise ValueError(f"ground truth is {size} but the synthetic rig renders {(rig.height, rig.width)}")
        camera = 3 if is_right else 2
        drive = synthetic.drive(sequence.split("/")[-1])
        cam_to_world = torch.from_numpy(kitti_raw_camera_to_world(synthetic.world, drive, rig, camera)[frame_id])
        K = torch.from_numpy(rig.P_rect[camera][:, :3])
        H, W = size
        v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        pixels = torch.stack([u, v], dim=-1).reshape(-1, 2).to(torch.float64)  # (u, v) pixel centres
        z = synthetic.world.depth_pinhole(cam_to_world, K, pixels).reshape(H, W).numpy()
        z = np.where(np.isfinite(z), z, 0.0)
        return torch.from_numpy(eigen_depth(z))
