"""The KITTI Eigen depth protocol for one frame (REFERENCE 7.2), plus the exact synthetic benchmark.

Render of view 0, distance -> z, nearest upsampling to the ground-truth size (the Garg crop is already in the
ground truth), optional per-image scaling, clamp to [1e-3, 80]. On the synthetic world, ``analytic`` also scores
the prediction against the exact dense depth at the same resolution (Eigen range and Garg crop applied the same
way). Only the pixels that some scored ground-truth pixel reads are rendered: the others cannot change a metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from datasets.kitti_raw.depth import eigen_depth, garg_crop_mask
from datasets.sample import Sample
from datasets.synthetic.root import SyntheticRoot
from utils.evaluation.common import pixels_read
from utils.metrics import depth_metrics, resize_to
from utils.occupancy.cache import ReferenceCache


class DepthEvaluator:
    """Scores one frame at a time against lidar ground truth, and against the exact depth of ``synthetic_root``
    (a generated synthetic world) when given (built from ``configs/eval/depth.yaml`` with ``_target_``).

    ``scaling``: None, ``median`` or ``l2`` per image. The exact depth maps are cached in ``cache_dir`` (None: no
    cache). ``max_frames`` and ``save_worst`` are read by the run.
    """

    protocol = "depth"

    def __init__(
        self,
        dataset,
        scaling: str | None = None,
        ray_chunk_size: int = 4096,
        synthetic_root: str | Path | None = None,
        cache_dir: str | Path | None = None,
        cache_name: str = "kitti_raw",
        max_frames: int | None = None,
        save_worst: int = 0,
    ):
        if scaling not in (None, "median", "l2"):
            raise ValueError(f"eval.scaling must be null, median or l2, got {scaling!r}")
        self.dataset = dataset
        self.scaling = scaling
        self.ray_chunk_size = ray_chunk_size
        self.synthetic = None if synthetic_root is None else SyntheticRoot.load(Path(synthetic_root))
        self.max_frames = max_frames
        self.save_worst = save_worst
        params = {"data_path": str(Path(dataset.data_path).resolve()), "split": str(dataset.split_path)}
        self.cache = ReferenceCache(cache_dir, cache_name, params)  # the exact depth maps

    @torch.no_grad()
    def frame(self, model: nn.Module, batch: Sample, head: str, encoder_views: list[int]) -> tuple[dict, None]:
        if batch.depth is None:
            raise ValueError("depth evaluation needs ground truth: build the dataset with return_depth=true")
        gt = batch.depth[:, 0].float().cpu()  # (1, H_gt, W_gt)
        size = tuple(gt.shape[-2:])
        exact = None
        if self.synthetic is not None:
            sequence, frame_id, is_right = batch.sequence[0], batch.frame_id[0], batch.is_right[0]
            exact = self.cache.tensors(
                f"exact_depth_{'r' if is_right else 'l'}",
                sequence.replace("/", "_"),
                frame_id,
                lambda: {"depth": self.exact_depth(sequence, frame_id, is_right, size)},
            )["depth"]
        # Only pixels that some ground-truth pixel reads after the nearest upsampling are scored: render those.
        scored = gt[0] > 0 if exact is None else (gt[0] > 0) | (exact > 0)
        H, W = batch.images.shape[-2:]
        pixels = pixels_read(lambda index: resize_to(index[None], size)[0][scored], H, W)
        chunk = self.ray_chunk_size
        render = model.render_view(
            batch, render_ids=(0,), encoder_ids=encoder_views, head=head, pixels=pixels, ray_chunk_size=chunk
        )
        depth = render.depth.float().cpu()  # (1, H, W), NaN where not read
        pred = resize_to(depth, size)
        row = {f"lidar/model/{k}": v.item() for k, v in depth_metrics(pred, gt, self.scaling).items()}
        if exact is not None:
            metrics = depth_metrics(pred, exact[None], self.scaling)
            row.update({f"analytic/model/{k}": v.item() for k, v in metrics.items()})
        return row, None

    def exact_depth(self, sequence: str, frame_id: int, is_right: bool, size: tuple[int, int]) -> Tensor:
        """Exact z-depth (H, W) of the synthetic KITTI-Raw input camera, Eigen range and Garg crop, 0 elsewhere."""
        rig = self.synthetic.kitti_raw_rig
        if (rig.height, rig.width) != size:
            raise ValueError(f"ground truth is {size} but the synthetic rig renders {(rig.height, rig.width)}")
        H, W = size
        crop = torch.from_numpy(garg_crop_mask(H, W))  # only these pixels are scored: cast only their rays
        v, u = torch.nonzero(crop, as_tuple=True)
        pixels = torch.stack([u, v], dim=-1).to(torch.float64)  # (u, v) pixel centres
        z = np.zeros((H, W))
        z[crop.numpy()] = self.synthetic.kitti_raw_depth(sequence, frame_id, is_right, pixels).numpy()
        z = np.where(np.isfinite(z), z, 0.0)
        return torch.from_numpy(eigen_depth(z))
