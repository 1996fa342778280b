"""Depth and occupancy metrics on hand-made examples with hand-computed values."""

import math

import pytest
import torch

from utils.metrics import FrameAverage, depth_metrics, occupancy_metrics, resize_to


def test_depth_metrics_by_hand():
    gt = torch.tensor([[[2.0, 4.0, 1.0], [0.0, 10.0, 0.0]]])
    pred = torch.tensor([[[1.0, 3.0, 1.9], [5.0, 100.0, 7.0]]])
    m = {k: v.item() for k, v in depth_metrics(pred, gt).items()}
    # valid gt (!= 0) row-major: g = [2, 4, 1, 10]; pred clamped to [1e-3, 80]: p = [1, 3, 1.9, 80]
    # abs_rel = (1/2 + 1/4 + 0.9/1 + 70/10) / 4 = 8.65 / 4
    assert m["abs_rel"] == pytest.approx(8.65 / 4)
    # sq_rel = (1/2 + 1/4 + 0.81/1 + 4900/10) / 4 = 491.56 / 4
    assert m["sq_rel"] == pytest.approx(491.56 / 4)
    # rmse = sqrt((1 + 1 + 0.81 + 4900) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(4902.81 / 4))
    # rmse_log = sqrt((ln 2^2 + ln(4/3)^2 + ln 1.9^2 + ln 8^2) / 4)
    logs = [math.log(2), math.log(4 / 3), math.log(1.9), math.log(8)]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    # max ratios [2, 1.333, 1.9, 8]: < 1.25 none; < 1.5625 one; < 1.953125 two
    assert (m["a1"], m["a2"], m["a3"]) == (0.0, 0.25, 0.5)


def test_depth_prediction_is_clamped_below():
    # p = 0 is clamped to 1e-3: abs_rel = |1 - 0.001| / 1
    m = depth_metrics(torch.zeros(2, 1, 1), torch.tensor([1.0, 0.0]).view(2, 1, 1))
    assert m["abs_rel"][0].item() == pytest.approx(0.999)
    assert math.isnan(m["abs_rel"][1].item())  # no ground truth in the second image


def test_median_scaling_uses_lower_median():
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 2, 2)
    pred = torch.tensor([2.0, 4.0, 8.0, 9.0]).view(1, 2, 2)
    m = {k: v.item() for k, v in depth_metrics(pred, gt, scaling="median").items()}
    # torch.median takes the lower middle value: 2 / 4 = 0.5 (the mean of the middles would give 2.5 / 6)
    # scaled p = [1, 2, 4, 4.5]; abs_rel = (0 + 0 + 1/3 + 0.5/4) / 4
    assert m["abs_rel"] == pytest.approx((1 / 3 + 0.125) / 4)
    assert m["a1"] == 0.75  # 4/3 > 1.25 fails, 4.5/4 = 1.125 passes


def test_depth_shapes_must_match():
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(torch.ones(1, 2, 2), torch.ones(1, 2, 3))


def test_resize_to_is_nearest():
    depth = torch.tensor([[[1.0, 2.0]]])
    assert resize_to(depth, (2, 4)).tolist() == [[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]


def _occ_example():
    pred = torch.tensor([1, 1, 0, 0, 1, 0], dtype=torch.bool)
    gt = torch.tensor([1, 0, 0, 1, 0, 0], dtype=torch.bool)
    visible = torch.tensor([0, 0, 0, 0, 1, 1], dtype=torch.bool)
    return pred, gt, visible


def test_occupancy_metrics_by_hand():
    m = occupancy_metrics(*_occ_example())
    # correct = [1, 0, 1, 0, 0, 1] -> 3 / 6
    assert m["o_acc"] == 0.5
    # hidden = points 0-3; correct there [1, 0, 1, 0] -> 2 / 4
    assert m["ie_acc"] == 0.5
    # hidden and empty = points 1, 2; not predicted there [0, 1] -> 1 / 2
    assert m["ie_rec"] == 0.5
    # predicted = points 0, 1, 4; gt there [1, 0, 0] -> 1 / 3
    assert m["o_prec"] == pytest.approx(1 / 3)
    # gt = points 0, 3; predicted there [1, 0] -> 1 / 2
    assert m["o_rec"] == 0.5
    # not predicted and hidden = points 2, 3; gt empty there [1, 0] -> 1 / 2
    assert m["ie_prec"] == 0.5
    # hidden-and-empty share 2 / 6, count 2, of which not predicted: point 2 -> 1
    assert m["ie_r"] == pytest.approx(2 / 6)
    assert (m["t_ie"], m["t_no_nop_nv"]) == (2.0, 1.0)


def test_occupancy_metrics_nan_on_empty_denominator():
    _, gt, visible = _occ_example()
    m = occupancy_metrics(torch.zeros(6, dtype=torch.bool), gt, visible)
    assert math.isnan(m["o_prec"])  # nothing predicted
    m = occupancy_metrics(torch.zeros(6, dtype=torch.bool), gt, torch.ones(6, dtype=torch.bool))
    assert math.isnan(m["ie_acc"]) and math.isnan(m["ie_rec"]) and math.isnan(m["ie_prec"])


def test_frame_average_skips_nan_per_metric():
    avg = FrameAverage()
    avg.update({"a": 1.0, "b": float("nan")})
    avg.update({"a": 0.5, "b": 2.0})
    avg.update({"a": 0.0, "b": 4.0})
    # a = (1 + 0.5 + 0) / 3; b skips the NaN frame: (2 + 4) / 2
    assert avg.compute() == {"a": pytest.approx(0.5), "b": 3.0}
    assert avg.counts() == {"a": 3, "b": 2}


def test_auroc_by_hand():
    from utils.metrics import auroc

    labels = torch.tensor([True, False, True, False])
    # perfect ranking, reversed ranking, one swapped pair (3 of 4 pairs right), constant score
    assert auroc(torch.tensor([0.9, 0.1, 0.8, 0.2]), labels) == 1.0
    assert auroc(torch.tensor([0.1, 0.9, 0.2, 0.8]), labels) == 0.0
    assert auroc(torch.tensor([0.9, 0.1, 0.3, 0.5]), labels) == 0.75
    assert auroc(torch.full((4,), 0.7), labels) == 0.5
    # ties between classes count one half: positives {2, 1}, negatives {1, 0} -> (1 + 1 + 0.5 + 1) / 4
    assert auroc(torch.tensor([2.0, 1.0, 1.0, 0.0]), labels) == 0.875
    # a bool score is (TPR + TNR) / 2: TPR 1/2, TNR 1
    assert auroc(torch.tensor([1.0, 0.0, 0.0, 0.0]), labels) == 0.75
    assert math.isnan(auroc(torch.tensor([0.3, 0.4]), torch.tensor([True, True])))


def test_occupancy_ranking_splits_hidden_points():
    from utils.metrics import occupancy_ranking

    gt = torch.tensor([True, False, True, False])
    visible = torch.tensor([False, False, True, True])
    score = torch.tensor([0.9, 0.1, 0.0, 1.0])  # right on the hidden pair, wrong on the visible one
    ranking = occupancy_ranking(score, gt, visible)
    # all points: positives {0.9, 0.0} vs negatives {0.1, 1.0}: only 0.9 > 0.1 of the 4 pairs
    assert ranking == {"ie_auroc": 1.0, "o_auroc": 0.25}
