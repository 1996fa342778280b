"""The BTS training model: relative poses, frame roles, shapes, no hidden state, float32 geometry."""

from __future__ import annotations

import math

import pytest
import torch

from datasets.sample import collate
from models.bts import BTSModel, relative_to_first_view
from tests.builders import BTS, build_field
from tests.scenes import TinySceneDataset
from utils.geometry import make_rigid, rotation_y, rotation_z


@pytest.fixture(scope="module")
def model() -> BTSModel:
    torch.manual_seed(0)
    field = build_field(BTS)
    return BTSModel(field, "kitti360-mono", ray_batch_size=128, samples_per_ray=8, eval_ray_chunk_size=1024).eval()


def _batch(num_views: int = 4, size=(64, 64)):
    ds = TinySceneDataset(length=2, image_size=size, num_views=num_views, return_depth=True)
    return collate([ds[0], ds[1]])


def _world_motion() -> torch.Tensor:
    R = (rotation_z(0.3) @ rotation_y(-1.1)).float()
    return make_rigid(R, torch.tensor([40.0, -7.0, 3.0]))


def test_relative_poses_put_view_0_at_the_origin():
    c2w = _batch().cam_to_world
    rel = relative_to_first_view(c2w)
    assert torch.allclose(rel[:, 0], torch.eye(4).expand(2, 4, 4), atol=1e-6)
    moved = relative_to_first_view(_world_motion() @ c2w)  # a different world frame, the same relative poses
    assert torch.allclose(moved, rel, atol=1e-4)


def test_forward_shapes_and_roles(model):
    batch = _batch()
    out = model(batch, generator=torch.Generator().manual_seed(0))
    B, R, S = 2, 128, 8
    assert out.render.rgb.shape == (B, R, 2, 3) and out.render.depth.shape == (B, R)
    assert out.render.weights.shape == (B, R, S) and out.target.shape == (B, R, 3)
    assert out.roles.encoder_ids == (0,) and sorted(out.roles.loss_ids + out.roles.render_ids) == [0, 1, 2, 3]
    assert set(out.rays.view_ids.unique().tolist()) <= set(out.roles.loss_ids)
    assert out.target.min() >= 0.0 and out.target.max() <= 1.0  # colours, not images in [-1, 1]


def test_the_output_does_not_depend_on_the_world_frame(model):
    batch = _batch()
    moved = _batch()
    moved.cam_to_world = _world_motion() @ moved.cam_to_world
    a = model(batch, generator=torch.Generator().manual_seed(1))
    b = model(moved, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a.render.depth, b.render.depth, rtol=1e-3, atol=1e-3)
    assert torch.allclose(a.render.rgb, b.render.rgb, atol=1e-3)


def test_forward_stores_nothing_on_the_module(model):
    before = {k: (v if not isinstance(v, dict) else dict(v)) for k, v in vars(model).items()}
    model(_batch(), generator=torch.Generator().manual_seed(2))
    assert vars(model).keys() == before.keys()
    assert all(model._modules[k] is before["_modules"][k] for k in before["_modules"])


def test_render_view_gives_z_depth_and_colours(model):
    view = model.render_view(_batch(num_views=2))
    assert view.depth.shape == (2, 64, 64) and view.rgb.shape == (2, 1, 3, 64, 64)
    assert (view.depth > 0).all() and math.isfinite(view.depth.sum().item())


def test_ray_batch_size_must_fill_whole_patches():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        BTSModel(build_field(BTS), ray_batch_size=100)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_keeps_geometry_in_float32(model):
    from utils.training.steps import autocast

    cuda_model = BTSModel(build_field(BTS), ray_batch_size=128, samples_per_ray=8).cuda()
    batch = _batch(num_views=4).to("cuda")
    with autocast(torch.device("cuda"), bf16=True):
        out = cuda_model(batch)
    assert out.rays.directions.dtype == torch.float32 and out.render.depth.dtype == torch.float32
    assert torch.isfinite(out.render.rgb).all()


def test_bf16_autocast_on_the_cpu_runs_only_the_encoder_in_bf16(monkeypatch):
    """With native bf16 the encoder's features come out of bf16 convolutions, but the model hands float32 features
    to the field and renders in float32; without it the context is off."""
    from utils.training import steps

    cpu = torch.device("cpu")
    monkeypatch.setattr(steps, "cpu_bf16_supported", lambda: False)
    assert not steps.bf16_applies(cpu, True)
    with steps.autocast(cpu, True):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(steps, "cpu_bf16_supported", lambda: True)
    assert steps.bf16_applies(cpu, True) and not steps.bf16_applies(cpu, False)
    model = BTSModel(build_field(BTS), ray_batch_size=128, samples_per_ray=8)
    batch = _batch(num_views=4)
    with steps.autocast(cpu, True):
        assert torch.is_autocast_enabled("cpu")
        features = model.field.encoder(batch.images[:, 0])
        out = model(batch)
    assert features.dtype == torch.bfloat16  # the convolutions did run in bf16
    assert out.render.depth.dtype == torch.float32 and out.render.rgb.dtype == torch.float32
    assert torch.isfinite(out.render.rgb).all()
