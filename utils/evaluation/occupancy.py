"""The KITTI-360 lidar occupancy protocol for one frame (REFERENCE 7.1), with baselines and exact references.

Benchmarks written per frame (``<benchmark>/<method>/<metric>``):

* ``lidar``: against the official lidar reference; methods ``model`` and the baselines ``empty`` / ``occupied``
  (constant answers), ``depth`` (occupied behind the model's depth), ``depth_4m`` (only up to 4 m behind),
  ``oracle`` (the exact occupancy, synthetic world).
* ``analytic`` (synthetic world): against the exact occupancy and visibility on the same grid; also scores
  the lidar reference itself (``lidar_reference``), showing what the lidar protocol costs a perfect model.
* ``analytic_volume`` (synthetic world): the model against the truth on ``volume_y_res`` slices.

Besides the protocol's thresholded metrics every method also gets ``o_auroc`` / ``ie_auroc``
(:func:`utils.metrics.occupancy_ranking`): how well its score (the model's density) ranks occupied above free
points, which shows learning before the density crosses the fixed 0.5 threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from datasets.sample import Sample
from datasets.synthetic.root import SyntheticRoot
from utils.evaluation.common import pixels_read
from utils.metrics import occupancy_metrics, occupancy_ranking
from utils.occupancy.cache import ReferenceCache
from utils.occupancy.grid import QueryGrid, transform
from utils.occupancy.lidar import LidarReference, lidar_reference
from utils.occupancy.protocol import (
    DEPTH_PLUS,
    depth_at_points,
    depth_baseline,
    project_points,
    reference_occupancy,
    visible_from_depth,
)

# Reference points for the model's rows: constant answers, occupancy from the model's own depth, the truth.
BASELINES = ("empty", "occupied", "depth", "depth_4m", "oracle")


@dataclass
class FrameMaps:
    """Bird's-eye maps (Z, X) of one frame, kept for pictures of the worst frames."""

    name: str
    score: float
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def window_reference(
    dataset, sequence: str, frame_id: int, num_scans: int, points_level: Tensor, grid: QueryGrid = QueryGrid()
) -> LidarReference:
    """The lidar reference of a frame from its ``num_scans`` scans.

    Our loader clamps the window at the sequence end (repeating the last scan); the official code truncates
    it instead, so repeated frames are dropped here and the vote is taken over the scans that exist.
    """
    window = dataset.load_lidar_window(sequence, frame_id, num_scans)
    keep = [i for i, f in enumerate(window.frame_ids) if f not in window.frame_ids[:i]]
    velo_to_level = grid.cam_to_level() @ torch.from_numpy(window.velo_to_cam0[keep])
    scans = [torch.from_numpy(np.asarray(window.scans[i], dtype=np.float64)) for i in keep]
    return lidar_reference(points_level.to(torch.float64), scans, velo_to_level, grid.y_range, grid.far_dist)


class OccupancyEvaluator:
    """Scores one frame at a time (built from ``configs/eval/lidar_occ.yaml`` with ``_target_``).

    ``dataset`` gives the frames and their lidar scans; ``grid`` is where the protocol asks (official by default);
    ``synthetic_root`` (a generated synthetic world) adds the exact benchmark and the ``oracle`` baseline; the
    model-independent references are cached in ``cache_dir`` (None: no cache). ``max_frames`` and ``save_worst``
    are read by the run: how many frames to score, and how many of the worst to draw.
    """

    protocol = "lidar_occupancy"

    def __init__(
        self,
        dataset,
        grid: QueryGrid | None = None,
        num_scans: int = 20,
        occupancy_threshold: float = 0.5,
        query_chunk_size: int = 50000,
        ray_chunk_size: int = 4096,
        baselines: Sequence[str] = (),
        synthetic_root: str | Path | None = None,
        volume_y_res: int = 0,
        cache_dir: str | Path | None = None,
        cache_name: str = "kitti_360",
        max_frames: int | None = None,
        save_worst: int = 5,
    ):
        self.dataset = dataset
        self.grid = QueryGrid() if grid is None else grid
        self.num_scans = num_scans
        self.occupancy_threshold = occupancy_threshold
        self.query_chunk_size = query_chunk_size
        self.ray_chunk_size = ray_chunk_size
        self.synthetic = None if synthetic_root is None else SyntheticRoot.load(Path(synthetic_root))
        self.baselines = tuple(baselines)
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"eval.baselines: unknown {sorted(unknown)}; choose from {list(BASELINES)}")
        if "oracle" in self.baselines and self.synthetic is None:
            raise ValueError("eval.baselines: 'oracle' needs the synthetic world (set eval.synthetic_root)")
        if volume_y_res > 0 and self.synthetic is None:
            raise ValueError("eval.volume_y_res > 0 scores against the exact world: set eval.synthetic_root")
        self.volume_y_res = volume_y_res
        self.max_frames = max_frames
        self.save_worst = save_worst
        params = {"num_scans": num_scans, "data_path": str(Path(dataset.data_path).resolve())}
        self.cache = ReferenceCache(cache_dir, cache_name, {**params, "grid": self.grid.describe()})
        self.points_level = self.grid.points()  # (P, 3)
        self.level_to_cam = self.grid.level_to_cam()
        self.points_cam = transform(self.level_to_cam, self.points_level)  # view 0 frame = "world" of the model

    @torch.no_grad()
    def frame(self, model: nn.Module, batch: Sample, head: str, encoder_views: list[int]) -> tuple[dict, FrameMaps]:
        """Metrics of one frame (batch of one sample) and its bird's-eye maps."""
        device = batch.images.device
        sequence, frame_id = batch.sequence[0], batch.frame_id[0]
        scene = model.encode_views(batch, encoder_views)
        density = model.field.density_fn(scene, head, self.query_chunk_size)
        K_norm = batch.K_norm[0, 0].cpu()
        # The depth map is only read at the grid points' projections: render just those pixels.
        H, W = batch.images.shape[-2:]
        uv, _ = project_points(self.points_level, self.level_to_cam, K_norm)
        pixels = pixels_read(lambda index: depth_at_points(index, uv), H, W)
        render = model.render_view(
            batch, render_ids=(0,), head=head, scene=scene, pixels=pixels, ray_chunk_size=self.ray_chunk_size
        )
        depth = render.depth[0].cpu()  # (H, W), NaN where not read
        sigma = density(self.points_cam.to(device))[0].cpu()
        pred = sigma > self.occupancy_threshold

        visible_pred = visible_from_depth(self.points_level, self.level_to_cam, K_norm, depth)
        ref = self.cache.get(
            sequence,
            frame_id,
            lambda: window_reference(self.dataset, sequence, frame_id, self.num_scans, self.points_level, self.grid),
        )
        gt, visible = reference_occupancy(ref.occupied, ref.visible, visible_pred)

        predictions = {"model": pred}
        if "empty" in self.baselines:
            predictions["empty"] = torch.zeros_like(pred)
        if "occupied" in self.baselines:
            predictions["occupied"] = torch.ones_like(pred)
        if "depth" in self.baselines:
            predictions["depth"] = depth_baseline(self.points_level, self.level_to_cam, K_norm, depth)
        if "depth_4m" in self.baselines:
            predictions["depth_4m"] = depth_baseline(self.points_level, self.level_to_cam, K_norm, depth, DEPTH_PLUS)
        row: dict[str, float] = {"lidar/num_scans": float(ref.num_scans)}
        truth = None
        if self.synthetic is not None:
            truth = self._analytic(sequence, frame_id, self.points_level, "analytic")
            if "oracle" in self.baselines:
                predictions["oracle"] = truth[0]
        # Scores for the threshold-free ranking metrics: the model's density, the baselines' 0/1 decisions.
        scores = {method: sigma if method == "model" else p.float() for method, p in predictions.items()}
        for method, p in predictions.items():
            row.update(_prefixed(f"lidar/{method}", occupancy_metrics(p, gt, visible)))
            row.update(_prefixed(f"lidar/{method}", occupancy_ranking(scores[method], gt, visible)))
        if truth is not None:
            row.update(self._analytic_rows(predictions, scores, gt, truth, density, device, sequence, frame_id))

        maps = {"prediction": pred, "reference": gt, "visible": visible}
        frame_maps = FrameMaps(
            name=f"{sequence}_{frame_id:010d}",
            score=row["lidar/model/o_acc"],
            maps={k: v.reshape(self.grid.z_res, self.grid.x_res).numpy() for k, v in maps.items()},
        )
        return row, frame_maps

    def _level_to_world(self, sequence: str, frame_id: int) -> Tensor:
        """(4, 4) levelled frame -> synthetic world (through the dataset's cam0 pose)."""
        return self.dataset.cam_to_world(sequence, frame_id, "00") @ self.level_to_cam

    def _analytic(self, sequence: str, frame_id: int, points_level: Tensor, kind: str) -> tuple[Tensor, Tensor]:
        """Exact (occupied, visible) of levelled points in the synthetic world (cached as ``kind``)."""

        def compute() -> dict[str, Tensor]:
            T = self._level_to_world(sequence, frame_id)
            points_world = transform(T, points_level.to(torch.float64))
            return {
                "occupied": self.synthetic.occupied(points_world),
                "visible": self.synthetic.visible(points_world, T[:3, 3]),
            }

        truth = self.cache.tensors(kind, sequence, frame_id, compute)
        return truth["occupied"], truth["visible"]

    def _analytic_rows(self, predictions, scores, lidar_gt, truth, density, device, sequence, frame_id) -> dict:
        occupied, visible = truth
        gt = occupied & ~visible
        row = {}
        predictions, scores = (
            {**predictions, "lidar_reference": lidar_gt},
            {**scores, "lidar_reference": lidar_gt.float()},
        )
        for method, p in predictions.items():
            row.update(_prefixed(f"analytic/{method}", occupancy_metrics(p, gt, visible)))
            row.update(_prefixed(f"analytic/{method}", occupancy_ranking(scores[method], gt, visible)))
        if self.volume_y_res > 0:
            points_level = self.grid.volume(self.volume_y_res)
            occ, vis = self._analytic(sequence, frame_id, points_level, f"analytic_volume{self.volume_y_res}")
            sigma = density(transform(self.level_to_cam, points_level).to(device))[0].cpu()
            pred = sigma > self.occupancy_threshold
            row.update(_prefixed("analytic_volume/model", occupancy_metrics(pred, occ & ~vis, vis)))
            row.update(_prefixed("analytic_volume/model", occupancy_ranking(sigma, occ & ~vis, vis)))
        return row


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}
