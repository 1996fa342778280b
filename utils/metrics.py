"""Evaluation metrics as pure functions (REFERENCE 7.1, 7.2).

Depth: the KITTI Eigen metrics of one image. Occupancy: the per-frame metrics of the KITTI-360 lidar
protocol. Both are averaged over frames with :class:`FrameAverage`, which skips NaN values per metric
exactly like the official ``MeanMetric`` (a frame whose denominator is empty does not count).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0
DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
OCCUPANCY_METRICS = ("o_acc", "ie_acc", "ie_rec", "o_prec", "o_rec", "ie_prec", "ie_r", "t_ie", "t_no_nop_nv")
DepthScaling = Literal["median", "l2"] | None


def resize_to(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """Depth maps (B, H, W) -> (B, H', W') with ``F.interpolate``'s default nearest mode (official)."""
    return F.interpolate(depth[:, None], size=tuple(size), mode="nearest")[:, 0]


def scale_depth(pred: Tensor, gt: Tensor, scaling: DepthScaling) -> Tensor:
    """Optional per-image scale alignment of ``pred`` to ``gt`` (H, W), fitted on ``gt > 0``."""
    if scaling is None:
        return pred
    mask = gt > 0
    if scaling == "median":
        # torch.median returns the lower of the two middle values for even counts (official quirk).
        return pred * (torch.median(gt[mask]) / torch.median(pred[mask]))
    if scaling == "l2":
        A = torch.stack([pred[mask], torch.ones_like(pred[mask])], dim=-1).float()  # (M, 2)
        x = torch.linalg.lstsq(A, gt[mask].unsqueeze(-1).float()).solution.squeeze(-1)  # (2,): scale, shift
        return pred * x[0] + x[1]
    raise ValueError(f"depth scaling must be None, 'median' or 'l2', got {scaling!r}")


def depth_metrics(pred: Tensor, gt: Tensor, scaling: DepthScaling = None) -> dict[str, Tensor]:
    """Eigen depth metrics per image: ``pred``, ``gt`` z-depth (B, H, W); gt 0 = no measurement.

    Returns name -> (B,) float64, NaN for an image without ground truth. Order as officially: optional
    per-image scaling, clamp the prediction to [1e-3, 80], then average over ``gt != 0``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    pred, gt = pred.double(), gt.double()
    if scaling is not None:
        pred = torch.stack([scale_depth(p, g, scaling) if (g > 0).any() else p for p, g in zip(pred, gt, strict=True)])
    pred = pred.clamp(MIN_DEPTH, MAX_DEPTH)
    mask = gt != 0
    count = mask.sum(dim=(-2, -1))  # (B,)
    g = torch.where(mask, gt, torch.ones_like(gt))  # 1 outside the mask keeps log and division finite

    def mean(values: Tensor) -> Tensor:
        return torch.where(mask, values, 0.0).sum(dim=(-2, -1)) / count  # 0 / 0 = NaN without gt

    ratio = torch.maximum(g / pred, pred / g)
    return {
        "abs_rel": mean((g - pred).abs() / g),
        "sq_rel": mean((g - pred) ** 2 / g),
        "rmse": mean((g - pred) ** 2).sqrt(),
        "rmse_log": mean((g.log() - pred.log()) ** 2).sqrt(),
        "a1": mean((ratio < 1.25).double()),
        "a2": mean((ratio < 1.25**2).double()),
        "a3": mean((ratio < 1.25**3).double()),
    }


def _masked_mean(values: Tensor, mask: Tensor) -> float:
    """Mean of ``values[mask]``; NaN when the mask is empty (the frame then does not count)."""
    count = int(mask.sum())
    return float("nan") if count == 0 else values[mask].double().sum().item() / count


def occupancy_metrics(pred: Tensor, gt: Tensor, visible: Tensor) -> dict[str, float]:
    """Per-frame occupancy metrics of the KITTI-360 protocol; all arguments are bool (N,).

    ``pred``: the model says occupied; ``gt``: the reference says occupied (already ``&= ~visible``);
    ``visible``: in front of a surface (first lidar scan or the model's own depth).
    """
    correct = pred == gt
    hidden = ~visible
    hidden_empty = ~gt & hidden
    return {
        "o_acc": _masked_mean(correct, torch.ones_like(correct)),
        "ie_acc": _masked_mean(correct, hidden),
        "ie_rec": _masked_mean(~pred, hidden_empty),
        "o_prec": _masked_mean(gt, pred),
        "o_rec": _masked_mean(pred, gt),
        "ie_prec": _masked_mean(~gt, ~pred & hidden),
        "ie_r": _masked_mean(hidden_empty, torch.ones_like(correct)),
        "t_ie": float(hidden_empty.sum()),
        "t_no_nop_nv": float((~pred & hidden_empty).sum()),
    }


def auroc(score: Tensor, label: Tensor) -> float:
    """Area under the ROC curve of ``score`` (N,) for the bool ``label`` (N,); NaN when a class is empty.

    The Mann-Whitney statistic with average ranks for ties: the probability that a random positive scores
    above a random negative, ties counting one half. A constant score gives 0.5; a bool score gives
    (true-positive rate + true-negative rate) / 2.
    """
    positives, total = int(label.sum()), label.numel()
    negatives = total - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    values, inverse, counts = torch.unique(score.double(), return_inverse=True, return_counts=True)
    upper = torch.cumsum(counts, 0).double()  # the largest 1-based rank of each distinct value
    average_rank = (upper - (counts.double() - 1) / 2)[inverse]
    rank_sum = average_rank[label].sum().item()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def occupancy_ranking(score: Tensor, gt: Tensor, visible: Tensor) -> dict[str, float]:
    """Threshold-free companions of :func:`occupancy_metrics` (not part of the official protocol).

    ``o_auroc``: how well ``score`` (e.g. the density) separates occupied from free points over the whole grid;
    ``ie_auroc``: the same over the points hidden from the camera (scene completion behind occluders). They show
    what a density field has learnt before its scale crosses the fixed 0.5 threshold.
    """
    hidden = ~visible
    return {"o_auroc": auroc(score, gt), "ie_auroc": auroc(score[hidden], gt[hidden])}


class FrameAverage:
    """Average of per-frame metric dicts; NaN values are skipped per metric (official ``MeanMetric``)."""

    def __init__(self) -> None:
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)
        self._names: list[str] = []

    def update(self, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            if name not in self._names:
                self._names.append(name)
            if math.isnan(value):
                continue
            self._sum[name] += value
            self._count[name] += 1

    def compute(self) -> dict[str, float]:
        """Metric -> mean over the frames where it was defined (NaN if it never was)."""
        return {n: self._sum[n] / self._count[n] if self._count[n] else float("nan") for n in self._names}

    def counts(self) -> dict[str, int]:
        """Metric -> number of frames that contributed."""
        return {n: self._count[n] for n in self._names}
