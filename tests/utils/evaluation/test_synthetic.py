"""The occupancy protocol, baselines and exact references on the synthetic world; end-to-end eval runs."""

import json

import pytest
import torch

from datasets.kitti_360.dataset import Kitti360Dataset
from tests.builders import SMALL
from utils.config import compose_config
from utils.evaluation.occupancy import OccupancyEvaluator, window_reference
from utils.evaluation.run import evaluate
from utils.metrics import occupancy_metrics
from utils.occupancy.grid import QueryGrid, level_to_cam
from utils.occupancy.protocol import depth_baseline, reference_occupancy


@pytest.fixture(scope="module")
def world_frame(synthetic_root):
    """(dataset, synthetic root, evaluator, sequence, frame id) of the first synthetic test frame."""
    k360 = synthetic_root / "KITTI-360"
    dataset = Kitti360Dataset(
        k360, split_path=k360 / "splits" / "test_files.txt", image_size=(32, 96), return_stereo=False
    )
    evaluator = OccupancyEvaluator(dataset, synthetic_root=synthetic_root)
    synthetic = evaluator.synthetic
    sequence, index, _ = dataset._datapoints[0]
    return dataset, synthetic, evaluator, sequence, int(dataset._frame_ids[sequence][index])


@pytest.fixture(scope="module")
def truth_and_lidar(world_frame):
    dataset, _, evaluator, sequence, frame_id = world_frame
    points = QueryGrid().points()
    truth = evaluator._analytic(sequence, frame_id, points, "analytic")
    return points, truth, window_reference(dataset, sequence, frame_id, 20, points)


def test_oracle_scores_one_against_the_analytic_truth(truth_and_lidar):
    _, (occupied, visible), _ = truth_and_lidar
    m = occupancy_metrics(occupied, occupied & ~visible, visible)  # the oracle queries the analytic world
    assert m["o_acc"] == 1.0
    assert 0 < occupied.float().mean() < 1  # the slice sees both solid and free space


def test_lidar_reference_mostly_agrees_with_the_truth(truth_and_lidar):
    _, (occupied, visible), lidar = truth_and_lidar
    assert lidar.num_scans == 20
    gt, _ = reference_occupancy(lidar.occupied, lidar.visible, torch.zeros_like(lidar.visible))
    agreement = (gt == (occupied & ~visible)).float().mean().item()
    # REFERENCE 10.3: 93-96 % on this world; the rest is "occupied" where no scan saw free space
    assert agreement > 0.9
    assert not (lidar.visible & occupied).any()  # the first scan never sees through a solid


def test_depth_baselines_from_the_exact_depth(world_frame, truth_and_lidar):
    dataset, synthetic, _, sequence, frame_id = world_frame
    points, (occupied, visible), _ = truth_and_lidar
    H, W = dataset.image_size
    K = dataset.calibration.K_norm.clone().double()
    K_px = K.clone()  # normalised -> pixels with centres at integers, matching the align_corners=True lookup
    K_px[0, 0], K_px[1, 1] = K[0, 0] * (W - 1) / 2, K[1, 1] * (H - 1) / 2
    K_px[0, 2], K_px[1, 2] = (K[0, 2] + 1) * (W - 1) / 2, (K[1, 2] + 1) * (H - 1) / 2
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pixels = torch.stack([u, v], -1).reshape(-1, 2).double()
    cam_to_world = dataset.cam_to_world(sequence, frame_id, "00")
    depth = synthetic.world.depth_pinhole(cam_to_world, K_px, pixels).reshape(H, W).clamp(max=80.0)
    behind = depth_baseline(points, level_to_cam(), K, depth)
    within = depth_baseline(points, level_to_cam(), K, depth, thickness=4.0)
    assert (within <= behind).all() and within.any()
    # an exact depth map classifies the visible points (free) almost perfectly
    assert (~behind[visible]).float().mean() > 0.9


def tiny_eval(data_path, tmp_path, *extra: str) -> list[str]:
    """An untrained small model on one frame of the synthetic world, with a reference cache in ``tmp_path``."""
    return [
        *SMALL,
        f"data.data_path={data_path}",
        "data.image_size=[64,192]",
        "model.samples_per_ray=16",
        "allow_random_weights=true",
        "num_workers=0",
        "device=cpu",
        "eval.max_frames=1",
        f"eval.cache_dir={tmp_path / 'cache'}",
        *extra,
    ]


def test_synthetic_occupancy_eval_end_to_end(synthetic_root, tmp_path):
    overrides = tiny_eval(synthetic_root / "KITTI-360", tmp_path, "eval.volume_y_res=1", "eval.save_worst=1")
    summary = evaluate(compose_config("eval_synthetic_occ", overrides), tmp_path / "run1")
    assert summary["analytic/oracle/o_acc"] == 1.0 and summary["analytic/oracle/ie_auroc"] == 1.0
    # the constant baselines: complementary accuracies, no ranking at all
    assert summary["analytic/empty/o_acc"] + summary["analytic/occupied/o_acc"] == pytest.approx(1.0)
    assert summary["analytic/empty/o_auroc"] == summary["analytic/occupied/ie_auroc"] == 0.5
    assert 0.0 <= summary["analytic/model/ie_auroc"] <= 1.0
    # The synthetic config's +-10 m grid: measured 0.70 on this small world (32-beam lidar, one frame) and 0.93 on
    # the default world (64 beams, 4 frames); the official grid's agreement is tested above.
    assert 0.6 < summary["analytic/lidar_reference/o_acc"] <= 1.0
    assert 0.0 <= summary["lidar/model/o_acc"] <= 1.0
    saved = json.loads((tmp_path / "run1" / "metrics.json").read_text())
    # Model-independent: the lidar reference, the exact truth on the slice and on the volume.
    assert saved["random_weights"] is True and (saved["cache"]["hits"], saved["cache"]["misses"]) == (0, 3)
    assert set(saved["cache"]["by_kind"]) == {"lidar", "analytic", "analytic_volume1"}
    assert (tmp_path / "run1" / "per_frame.csv").is_file()
    assert len(list((tmp_path / "run1" / "worst_frames").glob("*.png"))) == 1

    again = evaluate(compose_config("eval_synthetic_occ", overrides), tmp_path / "run2")  # second run: cached
    cached = json.loads((tmp_path / "run2" / "metrics.json").read_text())["cache"]
    assert (cached["hits"], cached["misses"], cached["key"]) == (3, 0, saved["cache"]["key"])
    assert again == pytest.approx(summary, nan_ok=True)


def test_synthetic_depth_eval_end_to_end(synthetic_root, tmp_path):
    overrides = tiny_eval(synthetic_root / "KITTI-Raw", tmp_path)
    summary = evaluate(compose_config("eval_synthetic_depth", overrides), tmp_path / "run1")
    for benchmark in ("lidar", "analytic"):
        assert summary[f"{benchmark}/model/abs_rel"] >= 0.0
        assert 0.0 <= summary[f"{benchmark}/model/a1"] <= 1.0
    # The exact depth map is model-independent: the second run reads it back and scores the same.
    again = evaluate(compose_config("eval_synthetic_depth", overrides), tmp_path / "run2")
    cached = json.loads((tmp_path / "run2" / "metrics.json").read_text())["cache"]
    assert (cached["hits"], cached["misses"]) == (1, 0)
    assert again == pytest.approx(summary, nan_ok=True)


def test_unknown_baseline_is_a_clear_error(world_frame):
    dataset = world_frame[0]
    with pytest.raises(ValueError, match=r"unknown \['deph'\]"):
        OccupancyEvaluator(dataset, baselines=["depth", "deph"])
    with pytest.raises(ValueError, match="needs the synthetic world"):
        OccupancyEvaluator(dataset, baselines=["oracle"])
    with pytest.raises(ValueError, match="set eval.synthetic_root"):
        OccupancyEvaluator(dataset, volume_y_res=2)


@pytest.mark.parametrize(
    ("trained", "evaluated", "warns"),
    [
        (True, False, True),
        (True, True, False),
        (None, True, True),
        (None, False, False),
        (False, False, False),
        ("official", True, True),
        ("official", False, False),
    ],
)
def test_evaluation_says_when_it_resizes_otherwise_than_training(caplog, trained, evaluated, warns):
    """A model trained on antialiased views and evaluated on bilinear ones (or the reverse) is named, with the fix;
    a checkpoint from before the option (no data.antialias stored) and an official file (no stored configuration)
    were trained on the official bilinear resizing."""
    from omegaconf import OmegaConf

    from utils.evaluation.run import warn_on_other_resizing

    if trained == "official":
        run_cfg = None
    else:
        run_cfg = OmegaConf.create({"data": {} if trained is None else {"antialias": trained}})
    cfg = compose_config("eval_synthetic_occ", [f"data.antialias={str(evaluated).lower()}"])
    with caplog.at_level("WARNING", logger="utils.evaluation.run"):
        warn_on_other_resizing(run_cfg, cfg)
    assert ("the checkpoint was trained on views resized with antialias=" in caplog.text) is warns
    if warns:
        fix = "true" if trained is True else "false"
        assert f"set data.antialias={fix} to evaluate it on the images it was trained on" in caplog.text
