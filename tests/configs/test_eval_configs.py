"""Every eval config composes; evaluation without a checkpoint is an error unless asked for."""

import pytest
from hydra.utils import get_class, instantiate

from models.frame_roles import resolve_encoder_views
from utils.checkpoints import MissingCheckpointError
from utils.config import CONFIG_DIR, compose_config
from utils.evaluation.run import evaluate

EVAL_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("eval_*.yaml"))
SMALL_MODEL = ["model.field.encoder.resnet_layers=18", "model.field.encoder.pretrained=false"]


def compose_eval(name, overrides=()):
    return compose_config(name, overrides)


@pytest.mark.parametrize("name", EVAL_CONFIGS)
def test_eval_config_composes_and_builds_the_model(name):
    cfg = compose_eval(name, SMALL_MODEL)
    assert cfg.checkpoint is None and cfg.allow_random_weights is False
    assert get_class(cfg.eval._target_).protocol in ("lidar_occupancy", "depth")  # the protocol is its _target_
    model = instantiate(cfg.model)
    assert cfg.eval_head in model.field.heads
    views = resolve_encoder_views(cfg.encoder_views)
    ds = cfg.eval.dataset
    returned = ds.frame_count * (2 if ds.return_stereo else 1) * (2 if ds.get("return_fisheye", False) else 1)
    assert max(views) < returned


def test_the_expected_eval_configs_exist():
    assert {
        "eval_lidar_occ",
        "eval_lidar_occ_mvbts",
        "eval_lidar_occ_bts",
        "eval_depth",
        "eval_synthetic_occ",
        "eval_synthetic_occ_mvbts",
        "eval_synthetic_depth",
    } <= set(EVAL_CONFIGS)


def test_official_test_splits_and_heads():
    kdbts = compose_eval("eval_lidar_occ")
    assert kdbts.eval_head == "single_view" and "multi_view" in kdbts.model.field.heads  # the KDBTS student
    assert kdbts.eval.dataset.split_path.endswith("seg/test_files.txt")
    assert compose_eval("eval_lidar_occ_mvbts").eval_head == "multi_view"
    assert compose_eval("eval_depth").eval.dataset.split_path.endswith("eigen_zhou/test_files.txt")
    assert compose_eval("eval_depth").eval.scaling is None


def test_eval_without_checkpoint_is_an_error(tmp_path):
    cfg = compose_eval("eval_lidar_occ_bts", SMALL_MODEL)
    with pytest.raises(MissingCheckpointError, match="allow_random_weights"):
        evaluate(cfg, tmp_path)
