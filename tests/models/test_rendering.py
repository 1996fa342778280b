"""Ray generation, sampling and compositing: invariants, hand-computed values and golden reference data."""

import numpy as np
import pytest
import torch

from models.field_output import FieldOutput
from models.rays import ImageRaySampler, PatchRaySampler, RayBundle, RaySamples, distance_to_z, rays_from_pixels
from models.rendering import (
    RenderViews,
    composite_weights,
    draw_jitter,
    render_image,
    render_rays,
    sample_colors,
    sample_distances,
)
from tests.golden import load_io
from utils.geometry import invert_rigid, project, transform_points

H, W = 12, 20
K_SIMPLE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.5, 0.1], [0.0, 0.0, 1.0]])


def load_fixture(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in load_io(name).items()}


def identity_cameras(num_views: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """K_norm (1, V, 3, 3) and cam_to_world (1, V, 4, 4) for V identical cameras at the origin."""
    return K_SIMPLE.expand(1, num_views, 3, 3).clone(), torch.eye(4).expand(1, num_views, 4, 4).clone()


class SphereField:
    """Opaque beyond distance ``radius`` from the origin, empty before; counts its calls."""

    def __init__(self, radius: float, num_encoder_views: int = 1):
        self.radius, self.num_encoder_views, self.calls = radius, num_encoder_views, 0

    def __call__(self, samples: RaySamples) -> FieldOutput:
        self.calls += 1
        points = samples.points.flatten(1, 2)  # (B, R S, 3)
        dist = points.norm(dim=-1)
        sigma = torch.where(dist >= self.radius, torch.full_like(dist, 1e4), torch.zeros_like(dist))
        invalid = torch.zeros(*points.shape[:2], self.num_encoder_views, dtype=torch.bool)
        return FieldOutput(sigma=sigma, invalid=invalid, head_outputs={"head": dist})


def constant_views(color: tuple[float, float, float], num_views: int = 1) -> RenderViews:
    K, c2w = identity_cameras(num_views)
    colors = torch.tensor(color)[None, None, :, None, None].expand(1, num_views, 3, H, W).clone()
    return RenderViews(colors=colors, K_norm=K, world_to_cam=invert_rigid(c2w))


def center_rays(num_rays: int = 5) -> RayBundle:
    K, c2w = identity_cameras()
    pixels = torch.stack([torch.arange(num_rays) + 3, torch.arange(num_rays) * 2 + 4], dim=-1)[None]
    return rays_from_pixels(pixels, torch.zeros(1, num_rays, dtype=torch.long), K, c2w, H, W)


# --- samples -------------------------------------------------------------------------------------------


def test_deterministic_distances_match_closed_form():
    d = sample_distances(1, 2, 3.0, 80.0, 64, dtype=torch.float64)
    k = np.arange(64) / 64.0
    expected = 1.0 / ((1.0 / 3.0) * (1.0 - k) + (1.0 / 80.0) * k)
    np.testing.assert_allclose(d[0, 1].numpy(), expected, rtol=1e-12)
    assert d[0, 0, 0].item() == pytest.approx(3.0)
    assert d[0, 0, -1].item() == pytest.approx(57.10, abs=5e-3)


def test_stratified_distances_stay_in_their_strata_and_are_reproducible():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    j1 = draw_jitter(2, 7, 16, generator=g1, dtype=torch.float64)
    d1 = sample_distances(2, 7, 3.0, 80.0, 16, j1, dtype=torch.float64)
    d2 = sample_distances(
        2, 7, 3.0, 80.0, 16, draw_jitter(2, 7, 16, generator=g2, dtype=torch.float64), dtype=torch.float64
    )
    assert torch.equal(d1, d2)
    with pytest.raises(ValueError, match="jitter has shape"):
        sample_distances(2, 7, 3.0, 80.0, 16, j1[:, :3])
    t = (1.0 / d1 - 1.0 / 3.0) / (1.0 / 80.0 - 1.0 / 3.0)  # back to the [0, 1] parameter
    k = torch.arange(16, dtype=torch.float64)
    assert torch.all(t >= k / 16 - 1e-12) and torch.all(t <= (k + 1) / 16 + 1e-12)
    assert torch.all(d1.diff(dim=-1) > 0) and d1.min() >= 3.0 and d1.max() <= 80.0


# --- compositing ---------------------------------------------------------------------------------------


def test_weights_sum_to_one_and_last_alpha_is_one():
    sigma = torch.rand(4, 9, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    d = sample_distances(4, 9, 3.0, 80.0, 32, dtype=torch.float64)
    weights, alphas = composite_weights(sigma, d)
    assert torch.all(alphas[..., -1] == 1.0)
    assert torch.allclose(weights.sum(-1), torch.ones(4, 9, dtype=torch.float64), atol=1e-8)
    assert torch.all(weights >= 0)


def test_composite_hand_computed_three_samples():
    sigma = torch.tensor([0.5, 1.0, 7.0], dtype=torch.float64)
    d = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    weights, alphas = composite_weights(sigma, d)
    a0, a1 = 1 - np.exp(-0.5), 1 - np.exp(-2.0)
    t1, t2 = 1 - a0 + 1e-10, (1 - a0 + 1e-10) * (1 - a1 + 1e-10)
    np.testing.assert_allclose(alphas.numpy(), [a0, a1, 1.0], rtol=1e-12)
    np.testing.assert_allclose(weights.numpy(), [a0, a1 * t1, t2], rtol=1e-12)


def test_zero_density_puts_all_weight_on_the_last_sample():
    d = sample_distances(1, 1, 3.0, 80.0, 8)
    weights, _ = composite_weights(torch.zeros(1, 1, 8), d)
    assert torch.allclose(weights[0, 0], torch.tensor([0.0] * 7 + [1.0]))


@pytest.mark.parametrize("k", [5, 20, 40])
def test_opaque_sphere_renders_its_distance(k):
    rays = center_rays()
    d = sample_distances(1, 1, rays.near, rays.far, 64, dtype=torch.float64)[0, 0]
    radius = 0.5 * (d[k - 1] + d[k]).item()  # between samples: the first opaque sample is k
    out = render_rays(rays, SphereField(radius), constant_views((0.2, 0.4, 0.6)), 64)
    assert torch.allclose(out.depth, torch.full_like(out.depth, d[k].item()), rtol=1e-5)
    assert (out.depth - radius).abs().max() <= (d[k] - d[k - 1]).item()


def test_depth_is_monotone_in_the_surface_distance():
    rays = center_rays(3)
    views = constant_views((0.5, 0.5, 0.5))
    depths = [render_rays(rays, SphereField(r), views, 64).depth for r in (4.0, 9.0, 20.0, 50.0)]
    for near, far in zip(depths[:-1], depths[1:], strict=True):
        assert torch.all(far > near)


def test_constant_colour_in_gives_the_same_colour_out_and_field_called_once():
    rays = center_rays()
    field = SphereField(12.0)
    jitter = draw_jitter(1, 5, 32, generator=torch.Generator().manual_seed(0))
    out = render_rays(rays, field, constant_views((0.2, 0.4, 0.6), num_views=2), 32, jitter=jitter)
    assert field.calls == 1
    assert out.rgb.shape == (1, 5, 2, 3)
    assert torch.allclose(out.rgb, torch.tensor([0.2, 0.4, 0.6]).expand_as(out.rgb), atol=1e-6)
    assert out.weights.shape == out.alphas.shape == out.sigma.shape == out.t_samples.shape == (1, 5, 32)
    assert out.invalid.shape == (1, 5, 32, 2) and not out.invalid.any()
    assert out.head_outputs["head"].shape == (1, 5, 32)
    # head outputs keep the (ray, sample) order: this head returns each point's distance from the origin
    assert torch.allclose(out.head_outputs["head"], out.t_samples, rtol=1e-5)


def test_points_no_encoder_view_sees_are_invalid_in_every_render_view():
    class BlindField(SphereField):
        def __call__(self, samples):
            out = super().__call__(samples)
            out.invalid[:, ::2] = True  # every other point is invalid in both encoder views
            return out

    out = render_rays(center_rays(), BlindField(10.0, 2), constant_views((0.1, 0.1, 0.1), 3), 8)
    expected = torch.zeros(1, 5 * 8, dtype=torch.bool)
    expected[:, ::2] = True
    assert torch.equal(out.invalid, expected.reshape(1, 5, 8, 1).expand(1, 5, 8, 3))


def test_sample_colors_hits_pixel_centres_and_flags_outside_points():
    K, c2w = identity_cameras()
    colors = torch.rand(1, 1, 3, H, W, generator=torch.Generator().manual_seed(1))
    views = RenderViews(colors=colors, K_norm=K, world_to_cam=invert_rigid(c2w))
    row, col, z = 5, 13, 7.0
    u = -1 + (2 * col + 1) / W  # align_corners=False pixel centre
    v = -1 + (2 * row + 1) / H
    inside = torch.tensor([(u - 0.0) / 1.0 * z, (v - 0.1) / 1.5 * z, z])
    outside = torch.tensor([3.0 * z, 0.0, z])
    behind = torch.tensor([0.0, 0.0, -2.0])
    sampled, invalid = sample_colors(torch.stack([inside, outside, behind])[None], views)
    assert torch.allclose(sampled[0, 0, 0], colors[0, 0, :, row, col], atol=1e-5)
    assert invalid[0, :, 0].tolist() == [False, True, True]


def test_chunked_field_queries_equal_one_pass():
    rays = center_rays(7)
    views = constant_views((0.3, 0.2, 0.1), 2)
    views.colors = torch.rand(1, 2, 3, H, W, generator=torch.Generator().manual_seed(2))
    full = render_rays(rays, SphereField(15.0), views, 16)
    point_chunked = render_rays(rays, SphereField(15.0), views, 16, field_chunk_size=2)
    for name in ("depth", "weights", "alphas", "t_samples", "sigma", "rgb", "invalid", "field_invalid"):
        assert torch.allclose(getattr(full, name).float(), getattr(point_chunked, name).float()), name
    assert torch.equal(full.head_outputs["head"], point_chunked.head_outputs["head"])


def test_render_image_equals_rendering_the_whole_bundle_at_once():
    """Chunks that do not divide the image, a pixel subset, and no pixel at all."""
    K, c2w = identity_cameras(2)
    views = constant_views((0.3, 0.2, 0.1), 2)
    views.colors = torch.rand(1, 2, 3, H, W, generator=torch.Generator().manual_seed(2))
    sampler = ImageRaySampler(H, W)
    rays = sampler(K[:, :1], c2w[:, :1])
    whole = render_rays(rays, SphereField(15.0), views, 16)
    image = render_image(SphereField(15.0), sampler, K[:, 0], c2w[:, 0], views, samples_per_ray=16, ray_chunk_size=7)
    torch.testing.assert_close(image.depth, sampler.to_image(distance_to_z(whole.depth, rays.directions_cam)))
    torch.testing.assert_close(image.rgb, sampler.to_image(whole.rgb).permute(0, 3, 4, 1, 2))
    invalid_weight = (whole.weights[..., None] * whole.invalid).sum(dim=2)  # (1, R, Vr)
    # Samples on the image border (|u| = 1) may flip validity with the rounding of another chunk shape (4 of 480 on
    # an AMX Xeon): all but a few entries agree exactly.
    agree = torch.isclose(image.invalid_weight, sampler.to_image(invalid_weight).permute(0, 3, 1, 2), atol=1e-5)
    assert agree.float().mean() > 0.98
    assert image.depth.shape == (1, H, W) and image.rgb.shape == (1, 2, 3, H, W)
    pixels = torch.tensor([0, 7, W + 1, H * W - 1])
    subset = render_image(SphereField(15.0), sampler, K[:, 0], c2w[:, 0], views, pixels=pixels, samples_per_ray=16)
    torch.testing.assert_close(subset.depth.view(1, -1)[:, pixels], image.depth.view(1, -1)[:, pixels])
    assert subset.depth.isnan().sum() == H * W - len(pixels)
    none = render_image(SphereField(15.0), sampler, K[:, 0], c2w[:, 0], views, pixels=pixels[:0], samples_per_ray=16)
    assert none.depth.isnan().all() and none.rgb.isnan().all()


# --- rays and samplers ---------------------------------------------------------------------------------


def test_distance_to_z_recovers_camera_depth():
    rays = center_rays()
    t = torch.full((1, 5), 10.0)
    points = rays.origins + t[..., None] * rays.directions
    assert torch.allclose(distance_to_z(t, rays.directions_cam), points[..., 2], atol=1e-6)


def test_rays_are_unit_and_follow_the_camera_pose():
    K, _ = identity_cameras(2)
    c2w = torch.eye(4).repeat(1, 2, 1, 1)
    c2w[0, 1, :3, 3] = torch.tensor([1.0, -2.0, 0.5])
    c2w[0, 1, :3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pixels = torch.tensor([[[2, 3], [2, 3]]])
    rays = rays_from_pixels(pixels, torch.tensor([[0, 1]]), K, c2w, H, W)
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(1, 2))
    assert torch.allclose(rays.origins[0, 1], torch.tensor([1.0, -2.0, 0.5]))
    assert torch.allclose(rays.directions[0, 1], c2w[0, 1, :3, :3] @ rays.directions[0, 0])
    x, y = -1 + 2 * 3 / (W - 1), -1 + 2 * 2 / (H - 1)  # linspace(-1, 1) grid
    expected = torch.tensor([x, (y - 0.1) / 1.5, 1.0])
    assert torch.allclose(rays.directions_cam[0, 0], expected / expected.norm())


def test_patch_sampler_shapes_ranges_colours_and_reproducibility():
    B, V, Hp, Wp = 2, 4, 24, 40
    colors = torch.rand(B, V, 3, Hp, Wp, generator=torch.Generator().manual_seed(0))
    K = K_SIMPLE.expand(B, V, 3, 3)
    c2w = torch.eye(4).expand(B, V, 4, 4)
    sampler = PatchRaySampler(ray_batch_size=64 * 6)
    loss_ids = [1, 3]
    patches = sampler.draw(B, Hp, Wp, loss_ids, generator=torch.Generator().manual_seed(5))
    rays, gt = sampler(colors, K, c2w, patches)
    rays2, gt2 = sampler(colors, K, c2w, sampler.draw(B, Hp, Wp, loss_ids, generator=torch.Generator().manual_seed(5)))
    assert sampler.num_patches == 6
    assert rays.origins.shape == rays.directions.shape == gt.shape == (B, 384, 3)
    assert torch.equal(rays.pixels, rays2.pixels) and torch.equal(gt, gt2)
    assert set(rays.view_ids.unique().tolist()) <= set(loss_ids)
    pix = rays.pixels.reshape(B, 6, 8, 8, 2)
    top_left = pix[:, :, 0, 0]
    assert top_left[..., 0].min() >= 0 and top_left[..., 0].max() < Hp - 8
    assert top_left[..., 1].min() >= 0 and top_left[..., 1].max() < Wp - 8
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    offsets = torch.stack([rows, cols], dim=-1)  # (8, 8, 2): each patch is a contiguous 8 x 8 block
    assert torch.equal(pix - top_left[:, :, None, None], offsets.expand_as(pix))
    assert torch.all(rays.view_ids.reshape(B, 6, 64) == rays.view_ids.reshape(B, 6, 64)[..., :1])
    b = torch.arange(B)[:, None]
    expected = colors[b, rays.view_ids, :, rays.pixels[..., 0], rays.pixels[..., 1]]  # (B, R, 3)
    assert torch.equal(gt, expected)
    same = rays_from_pixels(rays.pixels, rays.view_ids, K, c2w, Hp, Wp)
    assert torch.equal(same.directions, rays.directions)


def test_image_sampler_covers_every_pixel_row_major():
    K, c2w = identity_cameras()
    sampler = ImageRaySampler(H, W)
    rays = sampler(K, c2w)
    assert rays.shape == (1, H * W)
    pix = sampler.to_image(rays.pixels)
    assert pix.shape == (1, H, W, 2)
    assert pix[0, 4, 7].tolist() == [4, 7]


def test_image_sampler_subset_is_the_full_bundle_at_those_pixels():
    K, c2w = identity_cameras()
    sampler = ImageRaySampler(H, W)
    full = sampler(K, c2w)
    pixels = torch.tensor([0, 5, W + 3, H * W - 1])  # flat row-major: (0, 0), (0, 5), (1, 3), (H - 1, W - 1)
    subset = sampler(K, c2w, pixels=pixels)
    assert subset.pixels[0].tolist() == [[0, 0], [0, 5], [1, 3], [H - 1, W - 1]]
    assert torch.equal(subset.directions, full.directions[:, pixels])
    image = sampler.to_image(subset.directions[..., 2], pixels)  # (1, H, W): back in place, NaN elsewhere
    assert torch.equal(image.view(1, -1)[:, pixels], full.directions[:, pixels, 2])
    assert image.isnan().sum() == H * W - len(pixels)


# --- golden reference data -----------------------------------------------------------------------------


def _golden_render(data: dict[str, torch.Tensor], prefix: str):
    """Render the fixture's rays through a field that replays the stored sigma; encoder views = all views."""
    K, c2w = data["Ks"], data["poses_c2w"]
    R = data["ray_pix"].shape[0]
    rays = rays_from_pixels(data["ray_pix"][None], torch.zeros(1, R, dtype=torch.long), K, c2w, 192, 640)
    world_to_cam = invert_rigid(c2w)

    def replay_field(samples: RaySamples) -> FieldOutput:
        points = samples.points.flatten(1, 2)  # (1, N, 3)
        _, _, invalid = project(transform_points(world_to_cam, points[:, None]), K[:, :, None])  # (1, V, N)
        return FieldOutput(sigma=data[prefix + "sigma_samps"].reshape(1, -1), invalid=invalid.permute(0, 2, 1))

    views = RenderViews(colors=data["images"] * 0.5 + 0.5, K_norm=K, world_to_cam=world_to_cam)
    return rays, render_rays(rays, replay_field, views, 64)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [("bts_r18_io.npz", "ray_"), ("mvbts_r18_io.npz", "ray_teacher_"), ("mvbts_r18_io.npz", "ray_student_")],
)
def test_golden_rays_samples_compositing_and_colour(name, prefix):
    data = load_fixture(name)
    rays, out = _golden_render(data, prefix)
    B, R = out.depth.shape
    torch.testing.assert_close(rays.packed(), data["rays"], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.t_samples, data[prefix + "z_samps"], rtol=1e-6, atol=0)
    torch.testing.assert_close(out.alphas, data[prefix + "alphas"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.weights, data[prefix + "weights"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.depth, data[prefix + "depth"], rtol=1e-5, atol=0)
    torch.testing.assert_close(out.rgb.reshape(B, R, -1), data[prefix + "rgb"], rtol=0, atol=1e-4)
    assert torch.equal(out.invalid, data[prefix + "invalid"].bool())


def test_golden_colour_with_stored_weights():
    """Colour sampling alone: composite the stored weights with our sampled colours."""
    data = load_fixture("mvbts_r18_io.npz")
    rays = data["rays"]  # the reference's own rays
    points = rays[:, :, None, :3] + data["ray_teacher_z_samps"][..., None] * rays[:, :, None, 3:6]  # (1, R, S, 3)
    views = RenderViews(
        colors=data["images"] * 0.5 + 0.5, K_norm=data["Ks"], world_to_cam=invert_rigid(data["poses_c2w"])
    )
    colors, _ = sample_colors(points.reshape(1, -1, 3), views)  # (1, R S, 3, 3)
    rgb = (data["ray_teacher_weights"][..., None, None] * colors.reshape(1, 256, 64, 3, 3)).sum(2)
    torch.testing.assert_close(rgb.reshape(1, 256, 9), data["ray_teacher_rgb"], rtol=0, atol=1e-4)
