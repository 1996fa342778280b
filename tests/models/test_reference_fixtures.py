"""Our BTS / MVBTS / KDBTS forward pass reproduces the official code's outputs (fixture README §4).

Tolerances: rtol 1e-4 plus a small atol. On CPUs other than the one that produced the fixture, oneDNN
picks other convolution kernels, so the feature map differs by float32 noise (a few 1e-6); the
high-frequency PE terms (f = 48) amplify 1-ulp differences of (u, v, z~) to ~1e-4 for the rotated view 2.
"""

import numpy as np
import pytest
import torch

from models.checkpoint import load_official_checkpoint
from models.density_field import MULTI_VIEW_HEAD, SINGLE_VIEW_HEAD, RaysInCameras
from models.rays import RaySamples, rays_from_pixels
from models.rendering import RenderViews, render_rays, sample_distances
from tests.builders import BTS, KDBTS, NO_VIEW_DROPOUT, build_field
from tests.golden import load_io, official_checkpoint
from utils.geometry import invert_pose

RTOL = 1e-4
ATOL = 2e-5


def subsample(features: torch.Tensor, io: dict) -> np.ndarray:
    """Full feature maps (B, V, C, H, W) -> the fixture's (B, V, C, rows, cols) subsample."""
    return features[..., io["feat_rows"], :][..., io["feat_cols"]].numpy()


def encode_inputs(io: dict, views: slice = slice(None)) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(io[key][:, views]) for key in ("images", "Ks", "poses_c2w"))


@pytest.fixture(scope="module")
def bts():
    io = load_io("bts_r18_io.npz")
    field = build_field(BTS).eval()
    load_official_checkpoint(field, official_checkpoint("bts_r18.pt"))
    with torch.no_grad():
        scene = field.encode(*encode_inputs(io))
        points = torch.from_numpy(io["points"])
        inputs, invalid = field.view_inputs(scene, points)
        out = field.query(scene, points, density_head=SINGLE_VIEW_HEAD)
    return io, scene, inputs.cat(), invalid, out


@pytest.fixture(scope="module")
def mvbts():
    io = load_io("mvbts_r18_io.npz")
    field = build_field(KDBTS, NO_VIEW_DROPOUT).eval()
    load_official_checkpoint(field, official_checkpoint("mvbts_r18.pt"))
    points = torch.from_numpy(io["points"])
    with torch.no_grad():
        scene = field.encode(*encode_inputs(io))
        inputs, invalid = field.view_inputs(scene, points)
        results = {
            "scene": scene,
            "inputs": inputs.cat(),
            "invalid": invalid,
            "teacher_mlp_out": field.heads[MULTI_VIEW_HEAD].per_view(inputs),
            "teacher": field.query(scene, points, density_head=MULTI_VIEW_HEAD, all_heads=True),
            "student": field.query(scene, points, density_head=SINGLE_VIEW_HEAD),
            # Inference path: the heads' first layers applied to the feature maps once (ProjectedFeatures).
            "teacher_projected": field.query_chunked(scene, points, MULTI_VIEW_HEAD, chunk_size=1000),
            "student_projected": field.query_chunked(scene, points, SINGLE_VIEW_HEAD, chunk_size=1000),
            "view0only": field.query(field.encode(*encode_inputs(io, slice(0, 1))), points, MULTI_VIEW_HEAD),
        }
    return io, results


def test_bts_features(bts):
    io, scene, *_ = bts
    assert scene.features.shape == (1, 1, 64, 192, 640)
    np.testing.assert_allclose(subsample(scene.features, io), io["features_sub"], rtol=RTOL, atol=ATOL)


def test_bts_mlp_input_and_invalid(bts):
    io, _, inputs, invalid, _ = bts
    shipped = io["mlp_input"].shape[1]  # the fixture keeps the inputs of the first points only
    np.testing.assert_allclose(inputs[:, :shipped, 0].numpy(), io["mlp_input"], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(invalid[..., 0].numpy(), io["invalid"])


def test_bts_sigma(bts):
    io, *_, out = bts
    np.testing.assert_allclose(out.head_outputs[SINGLE_VIEW_HEAD].numpy(), io["sigma_raw"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.sigma.numpy(), io["sigma"], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(out.invalid[..., 0].numpy(), io["invalid"])


def test_mvbts_features_and_invalid(mvbts):
    io, r = mvbts
    np.testing.assert_allclose(subsample(r["scene"].features, io), io["features_sub"], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(r["invalid"].numpy(), io["invalid_per_view"])
    np.testing.assert_array_equal(r["teacher"].invalid.numpy(), io["invalid_per_view"])


def test_mvbts_teacher_per_view_mlp(mvbts):
    io, r = mvbts
    # Points behind / near a camera plane have chaotic high-frequency PE (README §6.4): compare the rest.
    well = io["well_conditioned_per_view"]
    np.testing.assert_allclose(r["teacher_mlp_out"].numpy()[well], io["teacher_mlp_out"][well], rtol=RTOL, atol=1e-4)


def test_mvbts_teacher_sigma(mvbts):
    io, r = mvbts
    well = io["well_conditioned"]
    np.testing.assert_allclose(r["teacher"].sigma.numpy()[well], io["sigma_teacher"][well], rtol=RTOL, atol=ATOL)
    raw = r["teacher"].head_outputs[MULTI_VIEW_HEAD].numpy()
    np.testing.assert_allclose(raw[well], io["sigma_raw_teacher"][well], rtol=RTOL, atol=ATOL)


def test_kdbts_student_sigma(mvbts):
    io, r = mvbts
    np.testing.assert_allclose(r["student"].sigma.numpy(), io["sigma_student"], rtol=RTOL, atol=ATOL)
    raw = r["student"].head_outputs[SINGLE_VIEW_HEAD].numpy()
    np.testing.assert_allclose(raw, io["sigma_raw_student"], rtol=RTOL, atol=ATOL)
    # With all_heads (the KD loss's call) the teacher query also returns the student's raw output, the same one.
    torch.testing.assert_close(r["teacher"].head_outputs[SINGLE_VIEW_HEAD], r["student"].head_outputs[SINGLE_VIEW_HEAD])
    assert set(r["student"].head_outputs) == {SINGLE_VIEW_HEAD}


@pytest.mark.parametrize(
    ("name", "head", "key"),
    [("teacher", MULTI_VIEW_HEAD, "sigma_raw_teacher"), ("student", SINGLE_VIEW_HEAD, "sigma_raw_student")],
)
def test_projected_feature_maps_give_the_official_densities(mvbts, name, head, key):
    """The inference path (first layer applied to the feature maps, then sampled) agrees with the fixture."""
    io, r = mvbts
    projected, direct = r[f"{name}_projected"], r[name]
    assert torch.equal(projected.invalid, direct.invalid)
    well = ~io["invalid_per_view"].all(axis=-1) if head == MULTI_VIEW_HEAD else np.ones_like(io[key], dtype=bool)
    np.testing.assert_allclose(projected.head_outputs[head].numpy()[well], io[key][well], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(projected.sigma, direct.sigma, rtol=1e-4, atol=1e-5)


def test_mvbts_teacher_with_view0_only(mvbts):
    io, r = mvbts
    np.testing.assert_allclose(r["view0only"].sigma.numpy(), io["sigma_teacher_view0only"], rtol=RTOL, atol=ATOL)


def test_kd_term_matches_reference(mvbts):
    io, r = mvbts
    teacher = torch.nn.functional.softplus(r["teacher"].head_outputs[MULTI_VIEW_HEAD]).clamp(0, 2)
    student = torch.nn.functional.softplus(r["student"].head_outputs[SINGLE_VIEW_HEAD]).clamp(0, 2)
    valid = ~r["teacher"].invalid[..., 0]
    kd = (student - teacher).abs()[valid].mean().item()
    assert kd == pytest.approx(float(io["kd_l1_view0valid"]), rel=1e-4)


def golden_ray_render(field, io: dict, head: str):
    """The fixture's rays (from view 0's camera: the per-ray path) rendered through our field and renderer."""
    images, K, c2w = encode_inputs(io)
    R = io["ray_pix"].shape[0]
    rays = rays_from_pixels(
        torch.from_numpy(io["ray_pix"])[None], torch.zeros(1, R, dtype=torch.long), K, c2w, 192, 640
    )
    views = RenderViews(colors=images * 0.5 + 0.5, K_norm=K, world_to_cam=invert_pose(c2w))
    with torch.no_grad():
        scene = field.encode(images, K, c2w)
        samples = RaySamples.along(rays.origins, rays.directions, sample_distances(1, R, 3.0, 80.0, 64))
        assert RaysInCameras.of(scene.world_to_cam, samples).from_every_camera(samples.t[..., 0]) == (
            images.shape[1] == 1
        )
        return render_rays(rays, field.field_fn(scene, head), views, 64)


def test_bts_rays_rendered_through_our_field(bts):
    io = bts[0]
    field = build_field(BTS).eval()
    load_official_checkpoint(field, official_checkpoint("bts_r18.pt"))
    out = golden_ray_render(field, io, SINGLE_VIEW_HEAD)
    np.testing.assert_allclose(out.sigma.numpy(), io["ray_sigma_samps"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.weights.numpy(), io["ray_weights"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.depth.numpy(), io["ray_depth"], rtol=1e-5)
    np.testing.assert_allclose(out.rgb.reshape(1, -1, 3).numpy(), io["ray_rgb"], rtol=0, atol=1e-4)


@pytest.mark.parametrize(("head", "prefix"), [(MULTI_VIEW_HEAD, "ray_teacher_"), (SINGLE_VIEW_HEAD, "ray_student_")])
def test_mvbts_rays_rendered_through_our_field(mvbts, head, prefix):
    io = mvbts[0]
    field = build_field(KDBTS, NO_VIEW_DROPOUT).eval()
    load_official_checkpoint(field, official_checkpoint("mvbts_r18.pt"))
    out = golden_ray_render(field, io, head)
    np.testing.assert_allclose(out.sigma.numpy(), io[prefix + "sigma_samps"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.weights.numpy(), io[prefix + "weights"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.depth.numpy(), io[prefix + "depth"], rtol=1e-5)
