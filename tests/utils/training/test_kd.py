"""MVBTS and KDBTS training: frozen heads stay put, KD starts from an MVBTS checkpoint with a fresh student, and the
synthetic teacher-then-student configs run end to end."""

from __future__ import annotations

import pytest
import torch

from models.bts import BTSModel
from models.checkpoint import CheckpointError
from models.losses import LossConfig
from tests.builders import MVBTS, NO_VIEW_DROPOUT, build_field, small_kdbts, tiny_batch
from utils.checkpoints import init_weights, read_checkpoint, rolling_checkpoints
from utils.config import compose_config
from utils.training.steps import TrainStep
from utils.training.train import training


def test_frozen_heads_and_encoder_do_not_move():
    model = small_kdbts(frozen_heads=["multi_view"])
    for p in model.field.encoder.parameters():
        p.requires_grad_(False)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    step = TrainStep(model, torch.optim.Adam(params, lr=1e-2), LossConfig(lambda_kd=0.01), torch.device("cpu"), False)
    output = step(None, tiny_batch())
    assert output.kd is not None and output.finite
    after = dict(model.named_parameters())  # (BatchNorm statistics follow train mode, as officially)
    for key, value in before.items():
        moved = not torch.equal(value, after[key])
        assert moved == key.startswith("field.heads.single_view."), key


def test_kd_starts_from_an_mvbts_checkpoint_with_a_fresh_student(tmp_path):
    torch.manual_seed(1)
    teacher_only = BTSModel(build_field(MVBTS, NO_VIEW_DROPOUT), density_head="multi_view")
    path = tmp_path / "mvbts.pt"
    torch.save({"model": teacher_only.state_dict()}, path)
    kd = small_kdbts()
    student_before = {k: v.clone() for k, v in kd.field.heads["single_view"].state_dict().items()}
    with pytest.raises(CheckpointError, match="heads.single_view"):
        init_weights(kd, path)
    init_weights(kd, path, new_heads=["single_view"])
    for key, value in teacher_only.state_dict().items():
        assert torch.equal(kd.state_dict()[key], value), key
    for key, value in kd.field.heads["single_view"].state_dict().items():
        assert torch.equal(value, student_before[key])
    with pytest.raises(ValueError, match="init_new_heads"):
        init_weights(kd, path, new_heads=["student"])


def test_synthetic_mvbts_then_kd_end_to_end(synthetic_root, tmp_path):
    common = [
        "debug=default",
        f"data.data_path={synthetic_root / 'KITTI-360'}",
        "data.val.length=1",
        "trainer.max_iters=2",
        "trainer.checkpoint_every=2",
        "trainer.validate_every=2",
    ]
    base = training(0, compose_config("train_synthetic_base", common), tmp_path / "mvbts")
    assert list(base.model.field.heads) == ["multi_view"] and base.iteration == 2
    assert "abs_rel" in base.val_metrics

    kd_cfg = compose_config("train_synthetic_KD", [*common, f"trainer.init_from={tmp_path / 'mvbts'}"])
    kd = training(0, kd_cfg, tmp_path / "kdbts")
    assert set(kd.model.field.heads) == {"multi_view", "single_view"} and kd.iteration == 2
    assert kd.model.density_head == "multi_view" and kd.model.eval_head == "single_view"
    checkpoint = read_checkpoint(rolling_checkpoints(tmp_path / "kdbts")[0])
    assert "field.heads.single_view.mlp.hidden.weight" in checkpoint["model"]
