"""MVBTS and KDBTS models: which head renders and which is validated (decision 3), the training encoder views, the
KD term on the rendered samples, and the keys that must name existing heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException

from models.bts import BTSModel
from models.losses import LossConfig, reconstruction_loss, training_loss
from tests.builders import KDBTS, NO_VIEW_DROPOUT, build_field, small_kdbts, tiny_batch


@pytest.mark.parametrize("head", ["multi_view", "single_view"])
def test_density_head_is_the_one_that_renders(head):
    """Under the official bug (the first head always renders) one of the two cases fails."""
    model = small_kdbts(density_head=head).train()
    out = model(tiny_batch(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.render.sigma, F.softplus(out.render.head_outputs[head]))
    other = "single_view" if head == "multi_view" else "multi_view"
    assert not torch.allclose(out.render.sigma, F.softplus(out.render.head_outputs[other]))


def test_eval_head_is_the_one_validation_renders():
    model = small_kdbts(eval_head="single_view").eval()
    batch = tiny_batch(num_views=2, with_depth=True)
    default = model.render_view(batch)
    student = model.render_view(batch, head="single_view")
    teacher = model.render_view(batch, head="multi_view")
    torch.testing.assert_close(default.depth, student.depth)
    assert (student.depth - teacher.depth).abs().max() > 1e-3


def test_stereo_encoder_views_start_with_view_0_and_use_perspective_frames():
    model = small_kdbts().train()
    for seed in range(10):
        roles = model(tiny_batch(), generator=torch.Generator().manual_seed(seed)).roles
        assert len(roles.encoder_ids) == 3 and roles.encoder_ids[0] == 0
        assert set(roles.encoder_ids[1:]) <= {1, 2, 3} and len(set(roles.encoder_ids)) == 3


def test_the_kd_term_is_added_with_its_weight_and_trains_only_the_student_through_kd():
    model = small_kdbts().train()
    out = model(tiny_batch(), generator=torch.Generator().manual_seed(1))
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
    model = small_kdbts().train()
    out = model(tiny_batch(), generator=torch.Generator().manual_seed(1))
    with pytest.raises(KeyError, match="KD student head 'student'"):
        training_loss(out.render, out.target, LossConfig(lambda_kd=0.01, kd_student_head="student"))


def test_unknown_heads_in_the_model_keys_are_refused():
    field = build_field(KDBTS, NO_VIEW_DROPOUT)
    with pytest.raises(ValueError, match="eval_head 'student'"):
        BTSModel(field, density_head="multi_view", eval_head="student")
    with pytest.raises(ValueError, match="frozen_heads"):
        BTSModel(field, density_head="multi_view", frozen_heads=["teacher"])
    with pytest.raises(ValueError, match="eval_encoder_ids must start with view 0"):
        BTSModel(field, density_head="multi_view", eval_encoder_ids=[2])
    with pytest.raises(InstantiationException, match="eval_head 'student'"):  # the same from a config
        small_kdbts(eval_head="student")


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
    model = small_kdbts(eval_encoder_ids=[0, 2]).eval()
    with pytest.raises(ValueError, match=r"encoder views \[0, 2\] asked for, but the batch has only 2 views"):
        model.render_view(tiny_batch(num_views=2, with_depth=True))
