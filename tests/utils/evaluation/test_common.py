"""Rendering only the pixels a protocol reads: the pixel set is exact and the sparse render equals the full one."""

from __future__ import annotations

import pytest
import torch

from datasets.sample import collate
from models.bts import BTSModel
from tests.builders import BTS, build_field, build_model, tiny_batch
from tests.scenes import TinySceneDataset
from utils.evaluation.common import pixels_read
from utils.metrics import resize_to
from utils.occupancy.protocol import depth_at_points


def test_pixels_read_by_the_nearest_lookup_worked_by_hand():
    # 3 x 4 map, align_corners=True: u = -1 -> column 0, u = 1 -> column 3; v = -1 -> row 0, v = 1 -> row 2;
    # u = -1/3 -> column 1, v = 0.1 -> row 1.1 -> 1; outside the image the border pixel is read.
    uv = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1 / 3, 0.1], [2.0, -3.0], [1.0, 1.0]])
    pixels = pixels_read(lambda index: depth_at_points(index, uv), 3, 4)
    assert pixels.tolist() == [0, 3, 5, 8, 11]  # sorted, the repeated (1, 1) once


def test_pixels_read_by_a_nearest_resize_and_a_mask():
    # 2 x 2 -> 4 x 4 nearest: ground-truth pixel (r, c) reads (r // 2, c // 2).
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 1] = mask[3, 3] = mask[2, 3] = True
    pixels = pixels_read(lambda index: resize_to(index[None], (4, 4))[0][mask], 2, 2)
    assert pixels.tolist() == [0, 3]


def test_pixels_read_refuses_maps_float32_cannot_index():
    with pytest.raises(ValueError, match="too many pixels"):
        pixels_read(lambda index: index, 4096, 4096)


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    field = build_field(BTS)
    model = BTSModel(field, "kitti360-mono", ray_batch_size=128, samples_per_ray=8, eval_ray_chunk_size=64).eval()
    ds = TinySceneDataset(length=2, image_size=(48, 64), num_views=2)
    return model, collate([ds[0], ds[1]])


def test_sparse_render_equals_the_full_render_where_read(model_and_batch):
    model, batch = model_and_batch
    head = model.eval_head
    with torch.no_grad():
        full = model.render_view(batch, render_ids=(0,), head=head, ray_chunk_size=97).depth  # (2, 48, 64)
        uv = torch.rand(300, 2, generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1  # some outside: border
        pixels = pixels_read(lambda index: depth_at_points(index, uv), 48, 64)
        scene = model.encode_views(batch, (0,))
        sparse = model.render_view(batch, render_ids=(0,), head=head, scene=scene, pixels=pixels, ray_chunk_size=33)
        sparse = sparse.depth
    assert sparse.shape == full.shape
    assert 0 < len(pixels) < 48 * 64
    flat_full, flat_sparse = full.view(2, -1), sparse.view(2, -1)
    torch.testing.assert_close(flat_sparse[:, pixels], flat_full[:, pixels], rtol=1e-5, atol=1e-5)
    unread = torch.ones(48 * 64, dtype=torch.bool)
    unread[pixels] = False
    assert flat_sparse[:, unread].isnan().all()
    for b in range(2):  # what the protocol reads is the same, and never a NaN
        read_sparse, read_full = depth_at_points(sparse[b], uv), depth_at_points(full[b], uv)
        assert not read_sparse.isnan().any()
        torch.testing.assert_close(read_sparse, read_full, rtol=1e-5, atol=1e-5)


def test_sparse_render_of_no_pixel_is_all_nan(model_and_batch):
    model, batch = model_and_batch
    with torch.no_grad():
        depth = model.render_view(batch, render_ids=(0,), pixels=torch.zeros(0, dtype=torch.long)).depth
    assert depth.shape == (2, 48, 64) and depth.isnan().all()


def test_validation_evaluation_and_the_scripts_render_the_same_depth():
    """The one image path: the validation step, the protocols' pixel subsets and the render scripts' input camera."""
    from scripts.common import PRESETS, InferenceModel, InputView, encode_input, input_camera, render_camera
    from utils.training.steps import make_eval_step

    model = build_model(BTS, "model.samples_per_ray=8", "model.eval_ray_chunk_size=100").eval()
    H, W = 64, 96
    batch = tiny_batch(num_views=2, image_size=(H, W), with_depth=True)
    validation = make_eval_step(model, torch.device("cpu"), bf16=False)(None, batch).render.depth  # (2, H, W)
    pixels = torch.tensor([0, 7, 3 * W + 5, H * W - 1])
    evaluation = model.render_view(batch, render_ids=(0,), pixels=pixels, ray_chunk_size=3).depth
    torch.testing.assert_close(evaluation.view(2, -1)[:, pixels], validation.view(2, -1)[:, pixels])
    for b in range(2):  # the scripts encode one image posed at the identity; the model re-bases on view 0 too
        loaded = InferenceModel(model, model.eval_head, (H, W), PRESETS["synthetic"], torch.device("cpu"))
        view = InputView(colors=batch.images[b, 0] * 0.5 + 0.5, K_norm=batch.K_norm[b, 0], name="x")
        script = render_camera(loaded, encode_input(loaded, view), view, input_camera(loaded, view)).depth
        torch.testing.assert_close(script, validation[b], rtol=1e-5, atol=1e-5)
