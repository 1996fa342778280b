"""MVBTS and KDBTS training: encoder views, which head renders / is validated (decision 3), the KD term,
frozen heads, starting KD from an MVBTS checkpoint, and both synthetic configs end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datasets.sample import collate
from models.bts import BTSModel
from models.checkpoint import CheckpointError
from models.losses import LossConfig, reconstruction_loss, training_loss
from tests.builders import KDBTS, MVBTS, NO_VIEW_DROPOUT, build_field
from tests.training.scenes import TinySceneDataset
from utils.checkpoints import init_weights, read_checkpoint, rolling_checkpoints
from utils.config import compose_config
from utils.training.steps import TrainStep
from utils.training.train import training


def _kdbts(density_head="multi_view", eval_head="single_view", **kwargs) -> BTSModel:
    torch.manual_seed(0)
    field = build_field(KDBTS, NO_VIEW_DROPOUT)
    return BTSModel(
        field,
        "kitti360-mono",
        ray_batch_size=128,
        samples_per_ray=8,
        density_head=density_head,
        eval_head=eval_head,
        encoding_style="stereo",
        num_multiviews=3,
        eval_ray_chunk_size=4096,
        **kwargs,
    )


def _batch(num_views: int = 8, val: bool = False):
    ds = TinySceneDataset(length=2, image_size=(64, 64), num_views=num_views, return_depth=val)
    return collate([ds[0], ds[1]])


@pytest.mark.parametrize("head", ["multi_view", "single_view"])
def test_density_head_is_the_one_that_renders(head):
    """Under the official bug (the first head always renders) one of the two cases fails."""
    model = _kdbts(density_head=head).train()
    out = model(_batch(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.render.sigma, F.softplus(out.render.head_outputs[head]))
    other = "single_view" if head == "multi_view" else "multi_view"
    assert not torch.allclose(out.render.sigma, F.softplus(out.render.head_outputs[other]))


def test_eval_head_is_the_one_validation_renders():
    model = _kdbts(eval_head="single_view").eval()
    batch = _batch(num_views=2, val=True)
    default = model.render_view(batch)
    student = model.render_view(batch, head="single_view")
    teacher = model.render_view(batch, head="multi_view")
    torch.testing.assert_close(default.depth, student.depth)
    assert (student.depth - teacher.depth).abs().max() > 1e-3


def test_stereo_encoder_views_start_with_view_0_and_use_perspective_frames():
    model = _kdbts().train()
    for seed in range(10):
        roles = model(_batch(), generator=torch.Generator().manual_seed(seed)).roles
        assert len(roles.encoder_ids) == 3 and roles.encoder_ids[0] == 0
        assert set(roles.encoder_ids[1:]) <= {1, 2, 3} and len(set(roles.encoder_ids)) == 3


def test_the_kd_term_is_added_with_its_weight_and_trains_only_the_student_through_kd():
    model = _kdbts().train()
    out = model(_batch(), generator=torch.Generator().manual_seed(1))
    cfg = LossConfig(lambda_kd=0.01)
    terms = training_loss(out.render, out.target, cfg)
    plain = reconstruction_loss(out.render, out.target, cfg)
    assert terms.kd is not None and terms.kd.item() > 0
    torch.testing.assert_close(terms.total, plain.total + 0.01 * terms.kd)
    assert training_loss(out.render, out.target, LossConfig(lambda_kd=0.0)).kd is None

    # With the teacher rendering, the photometric loss gives the student no gradient; the KD term does.
    plain.total.backward(retain_graph=True)
    assert all(p.grad is None for p in model.field.heads["single_view"].parameters())
    terms.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.field.heads["single_view"].parameters())


def test_kd_with_a_missing_head_is_a_clear_error():
    model = _kdbts().train()
    out = model(_batch(), generator=torch.Generator().manual_seed(1))
    with pytest.raises(KeyError, match="KD student head 'student'"):
        training_loss(out.render, out.target, LossConfig(lambda_kd=0.01, kd_student_head="student"))


def test_frozen_heads_and_encoder_do_not_move():
    model = _kdbts(frozen_heads=["multi_view"])
    for p in model.field.encoder.parameters():
        p.requires_grad_(False)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    step = TrainStep(model, torch.optim.Adam(params, lr=1e-2), LossConfig(lambda_kd=0.01), torch.device("cpu"), False)
    output = step(None, _batch())
    assert output.kd is not None and output.finite
    after = dict(model.named_parameters())  # (BatchNorm statistics follow train mode, as officially)
    for key, value in before.items():
        moved = not torch.equal(value, after[key])
        assert moved == key.startswith("field.heads.single_view."), key


def test_unknown_heads_in_the_model_keys_are_refused():
    with pytest.raises(ValueError, match="eval_head 'student'"):
        _kdbts(eval_head="student")
    with pytest.raises(ValueError, match="frozen_heads"):
        _kdbts(frozen_heads=["teacher"])
    with pytest.raises(ValueError, match="eval_encoder_ids must start with view 0"):
        _kdbts(eval_encoder_ids=[2])


def test_kd_starts_from_an_mvbts_checkpoint_with_a_fresh_student(tmp_path):
    torch.manual_seed(1)
    teacher_only = BTSModel(build_field(MVBTS, NO_VIEW_DROPOUT), density_head="multi_view")
    path = tmp_path / "mvbts.pt"
    torch.save({"model": teacher_only.state_dict()}, path)
    kd = _kdbts()
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


def test_named_evaluation_view_sets():
    from models.frame_roles import resolve_encoder_views

    assert resolve_encoder_views("mono") == [0]
    assert resolve_encoder_views("stereo") == [0, 2]
    assert resolve_encoder_views("mono_temporal") == [0, 1]
    assert resolve_encoder_views("stereo_fisheye") == [0, 2, 4, 6]
    assert resolve_encoder_views("full") == list(range(8))
    assert resolve_encoder_views([0, 3]) == [0, 3]
    with pytest.raises(ValueError, match="unknown encoder view set"):
        resolve_encoder_views("stereo+fisheye")
    with pytest.raises(ValueError, match="start with view 0"):
        resolve_encoder_views([2, 0])


def test_validation_refuses_encoder_views_the_batch_lacks():
    model = _kdbts(eval_encoder_ids=[0, 2]).eval()
    with pytest.raises(ValueError, match=r"encoder views \[0, 2\] asked for, but the batch has only 2 views"):
        model.render_view(_batch(num_views=2, val=True))
