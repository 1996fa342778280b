"""Density field: explicit encoded scene (no state on the module), head selection, fusion-head invariants."""

import pytest
import torch
import torch.nn.functional as F

from models import density_field
from models.density_field import EncodedScene, RaysInCameras, _grid_sample_views, ray_view_inputs, sample_features
from models.heads import INVALID_VIEW_LOGIT, MLP, MultiViewFusionHead, ViewInputs
from models.rays import RaySamples
from tests.builders import BTS, KDBTS, MVBTS, NO_VIEW_DROPOUT, build_field
from utils.geometry import make_rigid, rotation_y

H, W = 64, 96
K_NORM = torch.tensor([[0.7849, 0.0, -0.0312], [0.0, 2.9391, 0.2701], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def mvbts():
    torch.manual_seed(0)
    return build_field(KDBTS, NO_VIEW_DROPOUT).eval()


def scene_inputs(seed: int, views: int = 2):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(1, views, 3, H, W, generator=g) * 2 - 1
    K_norm = K_NORM.expand(1, views, 3, 3)
    poses = [torch.eye(4)] + [
        make_rigid(rotation_y(0.05 * v).float(), torch.tensor([0.5 * v, 0.0, 0.3])) for v in range(1, views)
    ]
    return images, K_norm, torch.stack(poses)[None]


def points(seed: int, n: int = 200):
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(1, n, 2, generator=g) - 0.5) * 10
    z = 3 + torch.rand(1, n, 1, generator=g) * 40
    return torch.cat([xy, z], dim=-1)


@torch.no_grad()
def test_interleaved_scenes_do_not_interact(mvbts):
    pts = points(1)
    # A warm-up query first: the first multi-threaded torch.sin of a process (the positional encoding here) came out
    # ~1e-4 off on one thread's half of the values in about one run in 10-60 on this project's CPU (torch 2.13,
    # 2026-12-06; the same at commits before the NHWC encoder), and never after. That is torch's, not a leak between
    # scenes, which is what this test is about.
    mvbts.query(mvbts.encode(*scene_inputs(30)), points(2), density_head="multi_view")
    scene_a = mvbts.encode(*scene_inputs(10))
    first = mvbts.query(scene_a, pts, density_head="multi_view")
    scene_b = mvbts.encode(*scene_inputs(20))
    other = mvbts.query(scene_b, pts, density_head="multi_view")
    again = mvbts.query(scene_a, pts, density_head="multi_view")
    torch.testing.assert_close(again.sigma, first.sigma, rtol=0, atol=0)
    assert not torch.allclose(other.sigma, first.sigma)
    # Batching two scenes equals querying them one by one.
    batched = [torch.cat(pair) for pair in zip(scene_inputs(10), scene_inputs(20), strict=True)]
    both = mvbts.query(mvbts.encode(*batched), pts.expand(2, -1, -1), density_head="multi_view")
    torch.testing.assert_close(both.sigma, torch.cat([first.sigma, other.sigma]), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def ray_samples(origin: torch.Tensor, seed: int, R: int = 40, S: int = 5) -> RaySamples:
    """R rays from ``origin`` (3,) towards the image of view 0 (some rays leave it), S samples each from 3 m on."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.cat([(torch.rand(1, R, 2, generator=g) - 0.5) * 2.4, torch.ones(1, R, 1)], dim=-1)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    t = 3.0 + torch.rand(1, R, S, generator=g).sort(dim=-1).values * 40
    return RaySamples.along(origin.expand(1, R, 3), directions, t)


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("from_camera", [True, False])
def test_field_fn_answers_what_query_answers_for_the_sample_points(mvbts, views, from_camera):
    """Rays from the (only) encoder camera take the per-ray path, the others the per-point path: the same values,
    for every head (the KD loss's call) and for one head through the projected feature maps (the inference call)."""
    scene = mvbts.encode(*scene_inputs(3, views))
    samples = ray_samples(torch.zeros(3) if from_camera else torch.tensor([0.4, -0.2, 0.5]), seed=4)
    per_ray = from_camera and views == 1
    assert RaysInCameras.of(scene.world_to_cam, samples).from_every_camera(samples.t[..., 0]) == per_ray
    every_head = mvbts.field_fn(scene, "single_view", all_heads=True)(samples)
    ref = mvbts.query(scene, samples.points.flatten(1, 2), density_head="single_view", all_heads=True)
    assert every_head.sigma.shape == (1, 200) and every_head.invalid.shape == (1, 200, views)
    assert torch.equal(every_head.invalid, ref.invalid)
    for name in ("multi_view", "single_view"):
        torch.testing.assert_close(every_head.head_outputs[name], ref.head_outputs[name], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(every_head.sigma, torch.nn.functional.softplus(every_head.head_outputs["single_view"]))
    with torch.no_grad():
        projected = mvbts.field_fn(scene, "single_view")(samples)
    assert set(projected.head_outputs) == {"single_view"}
    assert torch.equal(projected.invalid, ref.invalid)
    torch.testing.assert_close(projected.sigma, ref.sigma, rtol=1e-5, atol=1e-5)


def test_view_inputs_of_rays_from_the_camera_are_the_official_vector(mvbts):
    """The per-ray parts, put back in their columns, are the per-point head input (103 values per view)."""
    scene = mvbts.encode(*scene_inputs(5, 1))
    samples = ray_samples(torch.zeros(3), seed=6)
    rays = RaysInCameras.of(scene.world_to_cam, samples)
    per_ray, invalid = ray_view_inputs(scene, samples, rays, 3.0, 80.0, 6, 1.5)
    per_point, invalid_points = mvbts.view_inputs(scene, samples.points.flatten(1, 2))
    assert per_ray.width == per_point.width == 103
    torch.testing.assert_close(per_ray.cat().flatten(1, 2), per_point.cat(), rtol=1e-5, atol=2e-5)
    assert torch.equal(invalid.flatten(1, 2), invalid_points)


def test_unknown_head_is_an_error(mvbts):
    scene = EncodedScene(torch.zeros(1, 1, 64, 4, 4), K_NORM[None, None], torch.eye(4)[None, None])
    with pytest.raises(KeyError, match="unknown density head 'teacher'"):
        mvbts.query(scene, points(0, 3), density_head="teacher")
    with pytest.raises(KeyError):
        mvbts.field_fn(scene, "teacher")


def test_heads_get_their_input_width_from_the_field():
    """d_in is derived: 64 feature channels + 39 of positional encoding (103 officially), or what the config says."""
    field = build_field(BTS)
    assert list(field.heads) == ["single_view"] and field.heads.single_view.mlp.hidden.in_features == 103
    kdbts = build_field(KDBTS, "model.field.encoder.d_out=32", "model.field.num_freqs=4")
    assert list(kdbts.heads) == ["single_view", "multi_view"]  # the teacher config has no student: model/head/none
    assert kdbts.heads.multi_view.view_mlp.hidden.in_features == 32 + 3 + 3 * 2 * 4
    assert list(build_field(MVBTS).heads) == ["multi_view"]


def fusion_inputs(views: int, n: int = 50):
    torch.manual_seed(5)
    return torch.randn(1, n, views, 103)


@torch.no_grad()
def test_fusion_ignores_invalid_views():
    head = MultiViewFusionHead().eval()
    x = fusion_inputs(3)
    invalid = torch.zeros(1, 50, 3, dtype=torch.bool)
    invalid[..., 2] = True
    changed = x.clone()
    changed[..., 2, :] = torch.randn_like(changed[..., 2, :])
    torch.testing.assert_close(head(changed, invalid), head(x, invalid))
    # One valid view: the fused feature is that view's feature.
    single = head(x[..., :1, :], invalid[..., :1])
    only_view0 = invalid.clone()
    only_view0[..., 1] = True
    torch.testing.assert_close(head(x, only_view0), single)


@torch.no_grad()
def test_fusion_all_invalid_is_uniform_average():
    head = MultiViewFusionHead().eval()
    x = fusion_inputs(3)
    features = head.per_view(x)[..., 1:]
    expected = head.fusion_mlp(features.mean(dim=-2)).squeeze(-1)
    torch.testing.assert_close(head(x, torch.ones(1, 50, 3, dtype=torch.bool)), expected)
    assert INVALID_VIEW_LOGIT == -1e9


def test_view_dropout_only_in_training_and_never_view0():
    head = MultiViewFusionHead(view_dropout=0.5)
    invalid = torch.zeros(1, 4000, 3, dtype=torch.bool)
    dropped = head.train().drop_views(invalid)
    assert not dropped[..., 0].any()
    assert 0.4 < dropped[..., 1:].float().mean().item() < 0.6
    assert not head.eval().drop_views(invalid).any()


def test_the_head_output_bias_shifts_the_raw_density_by_exactly_its_value():
    from models.heads import SingleViewHead

    x, invalid = torch.randn(5, 7, 1, 103), torch.zeros(5, 7, 1, dtype=torch.bool)
    torch.manual_seed(3)
    official = SingleViewHead(out_bias=0.0)
    torch.manual_seed(3)
    shifted = SingleViewHead(out_bias=2.0)
    assert torch.equal(official.mlp.output.bias, torch.zeros(1))  # the official initialisation
    torch.testing.assert_close(shifted(x, invalid) - official(x, invalid), torch.full((5, 7), 2.0))


def test_the_fusion_head_output_bias_shifts_the_teacher_density_by_exactly_its_value():
    from models.heads import MultiViewFusionHead

    x, invalid = torch.randn(5, 7, 3, 103), torch.zeros(5, 7, 3, dtype=torch.bool)
    invalid[..., 2] = True
    torch.manual_seed(3)
    official = MultiViewFusionHead()
    torch.manual_seed(3)
    shifted = MultiViewFusionHead(out_bias=-2.0)
    assert torch.equal(official.fusion_mlp.output.bias, torch.zeros(1))
    torch.testing.assert_close(shifted(x, invalid) - official(x, invalid), torch.full((5, 7), -2.0))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("block", [7, 300, 8192])
def test_feature_lookup_in_cpu_training_equals_grid_sampler(block, channels_last, monkeypatch):
    """The CPU training lookup (channels-last maps read row by row, ``block`` points at a time: many blocks with a
    short last one, one block that spans exactly what a scene holds, one larger than all points; other maps through
    ``grid_sample``) answers what ``F.grid_sample`` answers, in the heads' (B, N, Ve, D) layout and contiguous, and
    its backward gives the maps ``grid_sample``'s own gradient: points inside, outside (border padding), on pixel
    centres and on the last row and column (a corner past the image at weight 0), two scenes of two views."""
    monkeypatch.setattr(density_field, "LOOKUP_BLOCK", block)
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(2, 2, 5, 7, 11, generator=g)
    if channels_last:
        maps = maps.reshape(4, 5, 7, 11).contiguous(memory_format=torch.channels_last).reshape(2, 2, 5, 7, 11)
    uv = torch.rand(2, 2, 150, 2, generator=g) * 2.6 - 1.3
    uv[:, :, :4] = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0 - 1 / 11, 1.0 - 1 / 7], [2.0, -3.0]])
    upstream = torch.randn(2, 150, 2, 5, generator=g)
    outs, grads = [], []
    for ours in (True, False):
        features = maps.clone().requires_grad_(True)
        out = sample_features(features, uv) if ours else _grid_sample_views(features, uv)
        assert out.shape == (2, 150, 2, 5)
        assert ("_SampleFeatures" in type(out.grad_fn).__name__) == ours  # the path under test is taken
        assert out.is_contiguous() or not ours
        (out * upstream).sum().backward()
        outs.append(out.detach())
        grads.append(features.grad)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # inference: grid_sample itself
        torch.testing.assert_close(sample_features(maps, uv), _grid_sample_views(maps, uv), rtol=0, atol=0)


def test_the_lookup_weights_are_grid_samplers_at_a_full_size_map():
    """At the official 640 pixels a coordinate rounded twice moves a bilinear weight by ~4e-5; the corners and
    weights of :func:`bilinear_corners` are those of PyTorch's kernel, so a map's sampled values agree to float32
    rounding of the four products' sum."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(1, 1, 4, 192, 640, generator=g).requires_grad_(True)
    uv = torch.rand(1, 1, 20000, 2, generator=g) * 2.2 - 1.1
    channels_last = maps.detach().reshape(1, 4, 192, 640).contiguous(memory_format=torch.channels_last)
    ours = sample_features(channels_last.reshape(1, 1, 4, 192, 640).requires_grad_(True), uv)
    torch.testing.assert_close(ours, _grid_sample_views(maps, uv), rtol=0, atol=2e-6)


@pytest.mark.parametrize("block_rows", [1, 100, 4096])
def test_the_blocked_mlp_answers_what_the_whole_tensor_form_does(block_rows):
    """Without gradients the MLP runs in blocks of points: a ray's parts (size 1 along the samples) go whole to each
    block, the samples' parts are cut, the last block is short; the answers are the whole-tensor form's (up to the
    rounding of the matrix products) and of the same shape. Plain tensors and a hidden offset too."""
    torch.manual_seed(0)
    mlp = MLP(103, 64, 17)
    parts = (torch.randn(2, 37, 1, 64), torch.randn(2, 37, 1, 26), torch.randn(2, 37, 70, 13))
    columns = (torch.arange(64), torch.arange(64, 90), torch.arange(90, 103))
    with_offset = ViewInputs((torch.randn(3, 999, 39),), (torch.arange(64, 103),), torch.randn(3, 999, 64))
    plain = torch.randn(5000, 103)
    for x in (ViewInputs(parts, columns), with_offset, ViewInputs((plain,))):
        whole = mlp.output(torch.relu(mlp.hidden(x)))
        with torch.no_grad():
            blocked = mlp.forward_blocked(x, block_rows=block_rows)
            assert torch.allclose(mlp(x), whole, rtol=1e-5, atol=1e-5)
        assert blocked.shape == whole.shape
        assert torch.allclose(blocked, whole, rtol=1e-5, atol=1e-5)
    # the blocks cover every point once: a different first row shows up in row 0 only
    changed = plain.clone()
    changed[0] += 1.0
    with torch.no_grad():
        diff = (mlp.forward_blocked(ViewInputs((changed,)), 100) - mlp.forward_blocked(ViewInputs((plain,)), 100)).abs()
    assert diff[0].max() > 0 and diff[1:].max() == 0


def test_parts_linear_equals_the_concatenated_layer_in_value_and_gradient_and_leaves_an_offset_alone():
    """Two same-rows parts (the second added inside the matrix product, in place) and a shared part broadcast over
    the samples: values and every gradient equal ``nn.Linear`` of the concatenated vector; a caller's hidden
    offset is summed in but never written to."""
    from models.heads import PartsLinear

    torch.manual_seed(0)
    layer = PartsLinear(103, 16)
    feature = torch.randn(4, 9, 1, 64, requires_grad=True)  # one row per ray, shared by its 9 samples
    code = torch.randn(4, 9, 6, 26, requires_grad=True)
    rest = torch.randn(4, 9, 6, 13, requires_grad=True)
    x = ViewInputs((code, rest, feature), (torch.arange(64, 90), torch.arange(90, 103), torch.arange(64)))
    upstream = torch.randn(4, 9, 6, 16)
    out = layer(x)
    # The in-place sums never touch a view under autograd (that would keep a copy of the whole sum for backward).
    nodes, seen = [out.grad_fn], set()
    while nodes:
        node = nodes.pop()
        if node is not None and node not in seen:
            seen.add(node)
            nodes += [next_fn for next_fn, _ in node.next_functions]
    assert not {type(n).__name__ for n in seen} & {"CopySlices", "AsStridedBackward0"}
    (out * upstream).sum().backward()
    ours = [t.grad.clone() for t in (feature, code, rest, layer.weight, layer.bias)]
    for t in (feature, code, rest, layer.weight, layer.bias):
        t.grad = None
    whole = torch.cat([feature.expand(4, 9, 6, 64), code, rest], dim=-1)
    torch.testing.assert_close(layer(x), F.linear(whole, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    (F.linear(whole, layer.weight, layer.bias) * upstream).sum().backward()
    expected_grads = (feature.grad, code.grad, rest.grad, layer.weight.grad, layer.bias.grad)
    for got, expected in zip(ours, expected_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    offset = torch.randn(4, 9, 6, 16)
    kept = offset.clone()
    with_offset = ViewInputs((code, rest), (torch.arange(64, 90), torch.arange(90, 103)), offset)
    expected = offset + F.linear(torch.cat([code, rest], dim=-1), layer.weight[:, 64:], layer.bias)
    torch.testing.assert_close(layer(with_offset), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(offset, kept)
