"""Every training config composes, is strict, and instantiates its model, optimizer, scheduler and datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError

from datasets.sample import Sample
from models.bts import BTSModel
from models.losses import LossConfig
from utils.config import CONFIG_DIR, compose_config

TRAIN_CONFIGS = sorted(p.stem for p in Path(CONFIG_DIR).glob("train_*.yaml"))
DATA_CONFIGS = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))


def test_the_expected_configs_exist():
    assert {
        "train_kitti_360_bts",
        "train_kitti_raw_bts",
        "train_synthetic_bts",
        "train_kitti_360_base",
        "train_kitti_raw_base",
        "train_synthetic_base",
        "train_kitti_360_KD",
        "train_kitti_raw_KD",
        "train_synthetic_KD",
    } <= set(TRAIN_CONFIGS)
    assert {"kitti_360", "kitti_raw", "synthetic_kitti_360"} <= set(DATA_CONFIGS)


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
@pytest.mark.parametrize("debug", [False, True])
def test_config_composes_in_struct_mode(name, debug):
    cfg = compose_config(name, ["debug=default"] if debug else [])
    assert cfg.model._target_ == "models.bts.BTSModel"
    with pytest.raises(ConfigAttributeError):
        _ = cfg.trainer.learning_rate  # struct mode: an unknown key is an error, not None
    if debug:
        assert cfg.trainer.max_iters <= 4 and cfg.model.field.encoder.resnet_layers == 18


def test_official_values():
    k360 = compose_config("train_kitti_360_bts")
    assert (k360.trainer.batch_size, k360.trainer.num_epochs, k360.trainer.optimizer.lr) == (16, 25, 1e-4)
    assert (k360.trainer.lr_scheduler.step_size, k360.trainer.lr_scheduler.gamma) == (120000, 0.1)
    assert (k360.model.ray_batch_size, k360.model.samples_per_ray, k360.model.patch_size) == (4096, 64, 8)
    assert (k360.model.z_near, k360.model.z_far) == (3.0, 80.0)
    assert list(k360.data.image_size) == [192, 640]
    assert k360.model.field.encoder.resnet_layers == 50 and k360.model.field.encoder.pretrained
    assert k360.model.frame_sample_mode == "kitti360-mono"
    assert k360.loss.lambda_smoothness == 1e-3
    raw = compose_config("train_kitti_raw_bts")
    assert (raw.model.ray_batch_size, raw.trainer.num_epochs, raw.model.frame_sample_mode) == (2048, 50, "default")


def test_official_mvbts_and_kdbts_values():
    """REFERENCE 3.3, 3.4, 4.1, 4.2, 9.4 (the KDBTS-old column for MVBTS)."""
    for name, style in (("train_kitti_360_base", "stereo"), ("train_kitti_raw_base", "random")):
        base = compose_config(name)
        assert (base.trainer.batch_size, base.model.ray_batch_size, base.model.samples_per_ray) == (8, 2048, 64)
        assert (base.model.encoding_style, base.model.num_multiviews) == (style, 3)
        assert base.model.field.heads.multi_view.view_dropout == 0.5
        assert (base.model.field.heads.multi_view.d_hidden, base.model.field.heads.multi_view.d_feature) == (128, 16)
        assert not base.model.field.heads.single_view and base.loss.lambda_kd == 0.0  # model/head/none: no student
    k360 = compose_config("train_kitti_360_KD")
    assert (k360.loss.lambda_kd, k360.model.density_head, k360.model.eval_head) == (1e-2, "multi_view", "single_view")
    assert not k360.model.field.encoder.freeze and not k360.model.frozen_heads  # trained jointly
    assert k360.model.field.heads.multi_view.view_dropout == 0.5 and k360.model.encoding_style == "stereo"
    assert k360.trainer.init_from and list(k360.trainer.init_new_heads) == ["single_view"]
    raw = compose_config("train_kitti_raw_KD")
    assert raw.model.field.encoder.freeze and list(raw.model.frozen_heads) == ["multi_view"]
    assert raw.model.field.heads.multi_view.view_dropout == 0.0 and raw.loss.lambda_kd == 1e-2
    assert (raw.trainer.batch_size, raw.trainer.max_iters) == (8, 20000)
    large = compose_config("train_kitti_360_base", ["model=mvbts_large"]).model.field.heads.multi_view
    assert (large.d_hidden, large.d_feature, large.d_fusion_hidden) == (256, 32, 32)
    dft = compose_config("train_kitti_360_base", ["model=mvbts_dft"]).model.field.heads.multi_view
    assert dft._target_ == "models.heads.TransformerFusionHead" and (dft.num_layers, dft.num_heads) == (3, 4)


@pytest.mark.parametrize(
    "override",
    ["trainer.lerning_rate=0.1", "model.ray_batchsize=8", "data=kitti_361", "debug=nonexistent"],
)
def test_a_typo_fails_loudly(override):
    with pytest.raises(ConfigCompositionException):
        compose_config("train_kitti_360_bts", [override])


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_model_optimizer_scheduler_and_loss_instantiate(name):
    # The official configs as they are, except for ImageNet weights (no network in tests).
    cfg = compose_config(name, ["model.field.encoder.pretrained=false"])
    model = instantiate(cfg.model)
    assert isinstance(model, BTSModel)
    assert model.ray_sampler.num_patches * 64 == cfg.model.ray_batch_size
    assert model.field.encoder.resnet_layers == cfg.model.field.encoder.resnet_layers
    optimizer = instantiate(cfg.trainer.optimizer)(params=model.parameters())
    # The official KD runs continued the MVBTS schedule after its x0.1 step at 120k iterations.
    # The synthetic recipe's lr 3e-4 is a deliberate difference (configs/experiment/synthetic.yaml, the training study).
    expected_lr = {"train_kitti_360_KD": 1e-5, "train_kitti_raw_KD": 1e-5}.get(name, 1e-4)
    expected_lr = 3e-4 if name.startswith("train_synthetic") else expected_lr
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == expected_lr
    scheduler = instantiate(cfg.trainer.lr_scheduler)(optimizer=optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and scheduler.step_size == 120000
    loss = instantiate(cfg.loss)
    assert isinstance(loss, LossConfig)
    # The official objective (REFERENCE 5.3; test_official_step.py): 2 L_ph + 1e-3 L_eas (+ 1e-2 L_kd).
    assert (loss.lambda_photometric, loss.lambda_smoothness) == (2.0, 1e-3)
    assert loss.lambda_kd == (1e-2 if name.endswith("_KD") else 0.0)


def _point_at_synthetic(cfg: DictConfig, root: Path) -> list[str]:
    """Overrides that keep a config's dataset settings but read the synthetic world."""
    if cfg.data.train._target_.endswith("Kitti360Dataset"):
        k360 = root / "KITTI-360"
        return [
            f"data.data_path={k360}",
            f"data.train.split_path={k360}/splits/train_files.txt",
            f"data.val.dataset.split_path={k360}/splits/val_files.txt",
        ]
    raw = root / "KITTI-Raw"
    return [f"data.data_path={raw}", f"data.pose_path={raw}/orb-slam_poses", f"data.split_dir={raw}/splits/synthetic"]


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_datasets_instantiate(name, synthetic_root):
    cfg = compose_config(name)
    cfg = compose_config(name, ["data.image_size=[32,96]", *_point_at_synthetic(cfg, synthetic_root)])
    train_set, val_set = instantiate(cfg.data.train), instantiate(cfg.data.val)
    assert len(train_set) > 0 and 0 < len(val_set) <= cfg.data.val.length
    sample = train_set[0]
    assert isinstance(sample, Sample) and sample.images.shape[-2:] == (32, 96)
    assert sample.num_views == (8 if cfg.model.frame_sample_mode == "kitti360-mono" else 4)
    assert val_set[0].depth is not None


@pytest.mark.parametrize("data", [d for d in DATA_CONFIGS if d.startswith("synthetic")])
def test_synthetic_data_groups(data, synthetic_root):
    root = synthetic_root / ("KITTI-360" if data.endswith("360") else "KITTI-Raw")
    cfg = compose_config("train_synthetic_bts", [f"data={data}", f"data.data_path={root}"])
    assert len(instantiate(cfg.data.train)) > 0 and len(instantiate(cfg.data.val)) > 0


def test_only_the_synthetic_configs_resize_with_antialiasing():
    """The KITTI configs resize as the official code does (the official checkpoints saw INTER_LINEAR); the
    synthetic world's 64 x 192 views are 7x smaller than its renders and are antialiased, for training, validation
    and evaluation alike."""
    for name in TRAIN_CONFIGS:
        cfg = compose_config(name)
        expected = name.startswith("train_synthetic")
        assert cfg.data.antialias is expected, name
        assert cfg.data.train.antialias is expected and cfg.data.val.dataset.antialias is expected, name
    for name in ("eval_synthetic_occ", "eval_synthetic_depth", "eval_lidar_occ", "eval_depth"):
        cfg = compose_config(name)
        assert cfg.eval.dataset.antialias is name.startswith("eval_synthetic"), name
