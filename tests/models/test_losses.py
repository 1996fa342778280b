"""Losses and frame roles: hand-computed values, an independent float64 SSIM, golden KD value."""

import numpy as np
import pytest
import torch

from models.losses import (
    LossConfig,
    edge_aware_smoothness,
    kd_density_loss,
    photometric_loss,
    reconstruction_loss,
    ssim_error,
    weight_guided_invalid,
)
from models.rendering import RenderOutput
from tests.golden import load_io

GAUSS = np.array([[0.0947, 0.1183, 0.0947], [0.1183, 0.1478, 0.1183], [0.0947, 0.1183, 0.0947]])


def ssim_error_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent float64 SSIM error of one (h, w) channel: explicit windows over a zero-padded image."""
    h, w = x.shape
    xp, yp = np.pad(x, 1), np.pad(y, 1)
    out = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            wx, wy = xp[i : i + 3, j : j + 3], yp[i : i + 3, j : j + 3]
            mx, my = (GAUSS * wx).sum(), (GAUSS * wy).sum()
            vx = (GAUSS * wx**2).sum() - mx**2
            vy = (GAUSS * wy**2).sum() - my**2
            cxy = (GAUSS * wx * wy).sum() - mx * my
            ssim = ((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
            out[i, j] = min(max(1 - ssim, 0.0), 1.0) / 2
    return out


def patch_batch(values: torch.Tensor) -> torch.Tensor:
    """(B, P, 8, 8, ...) -> per-ray (B, P 64, ...)."""
    return values.reshape(values.shape[0], -1, *values.shape[4:])


# --- SSIM and photometric ------------------------------------------------------------------------------


def test_ssim_of_identical_patches_is_zero():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim_error(x, x), torch.zeros_like(x), atol=1e-6)


def test_ssim_matches_an_independent_float64_reference():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = (x + 0.3 * torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)).clamp(0, 1)
    expected = ssim_error_reference(x[0, 0].numpy(), y[0, 0].numpy())
    np.testing.assert_allclose(ssim_error(x, y)[0, 0].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ssim_of_constant_patches_interior_closed_form():
    a, b = 0.2, 0.7
    x, y = torch.full((1, 1, 8, 8), a, dtype=torch.float64), torch.full((1, 1, 8, 8), b, dtype=torch.float64)
    s = GAUSS.sum()  # the window sums to 0.9999, not 1, so the variances are tiny but not zero
    mx, my = a * s, b * s
    vx, vy, cxy = a * a * s - mx**2, b * b * s - my**2, a * b * s - mx * my
    ssim = ((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
    assert ssim_error(x, y)[0, 0, 4, 4].item() == pytest.approx((1 - ssim) / 2, rel=1e-10)


def test_photometric_loss_on_constant_patches_by_hand():
    a, b = 0.25, 0.75
    pred = torch.full((1, 1, 8, 8, 1, 3), a, dtype=torch.float64)
    gt = torch.full((1, 1, 8, 8, 3), b, dtype=torch.float64)
    ssim = ssim_error_reference(np.full((8, 8), a), np.full((8, 8), b)).mean()
    expected = 0.85 * ssim + 0.15 * abs(a - b)
    invalid = torch.zeros(1, 64, dtype=torch.bool)
    loss = photometric_loss(patch_batch(pred), patch_batch(gt), invalid)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_photometric_loss_takes_the_best_render_view_per_pixel():
    gen = torch.Generator().manual_seed(2)
    gt = torch.rand(2, 3, 8, 8, 3, generator=gen, dtype=torch.float64) * 0.5
    far_off, close = gt + 0.4, gt + 0.05
    invalid = torch.zeros(2, 192, dtype=torch.bool)
    both = torch.stack([far_off, close], dim=4)  # (B, P, 8, 8, Vr = 2, 3)
    single = close[:, :, :, :, None]
    loss_both = photometric_loss(patch_batch(both), patch_batch(gt), invalid)
    loss_close = photometric_loss(patch_batch(single), patch_batch(gt), invalid)
    assert loss_both.item() == pytest.approx(loss_close.item(), rel=1e-12)
    exact = torch.stack([far_off, gt], dim=4)
    assert photometric_loss(patch_batch(exact), patch_batch(gt), invalid).item() == pytest.approx(0.0, abs=1e-9)


def test_weight_guided_invalid_drops_only_rays_invalid_in_all_views():
    weights = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [0.05, 0.95], [0.5, 0.5]]])  # (B = 1, R = 4, S = 2)
    invalid = torch.zeros(1, 4, 2, 2, dtype=torch.bool)  # (B, R, S, Vr = 2)
    invalid[0, 0] = True  # ray 0: everything invalid in both views -> dropped
    invalid[0, 1, :, 0] = True  # ray 1: invalid in view 0 only -> kept
    invalid[0, 2, 1, :] = True  # ray 2: 0.95 of the weight invalid in both views -> dropped
    invalid[0, 3, 1, :] = True  # ray 3: 0.5 of the weight invalid -> kept
    assert weight_guided_invalid(weights, invalid).tolist() == [[True, False, True, False]]


def test_dropped_rays_count_as_zero_in_the_mean():
    gt = torch.zeros(1, 2, 8, 8, 3, dtype=torch.float64)
    pred = (gt + 0.5)[:, :, :, :, None]
    invalid = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    full = photometric_loss(patch_batch(pred), patch_batch(gt), patch_batch(invalid))
    invalid[:, 1] = True
    half = photometric_loss(patch_batch(pred), patch_batch(gt), patch_batch(invalid))
    assert half.item() == pytest.approx(full.item() / 2, rel=1e-12)


# --- smoothness ----------------------------------------------------------------------------------------


def test_smoothness_is_zero_for_constant_depth():
    depth = torch.full((2, 128), 17.0)
    img = torch.rand(2, 128, 3, generator=torch.Generator().manual_seed(3))
    assert edge_aware_smoothness(depth, img, torch.zeros(2, 128, dtype=torch.bool)).item() == 0.0


def test_smoothness_hand_example_with_alternating_columns():
    da, db = 4.0, 10.0  # disparities 1/4 and 1/10 alternate along x, constant along y
    depth = torch.tensor([da, db] * 4, dtype=torch.float64).expand(8, 8).reshape(1, 64)
    img = torch.full((1, 64, 3), 0.3, dtype=torch.float64)  # flat image: exp(-0) = 1
    a, b = 1 / da, 1 / db
    expected = (7 / 8) * 2 * abs(a - b) / (a + b)  # |dx| of the mean-normalised disparity on 7 of 8 columns
    invalid = torch.zeros(1, 64, dtype=torch.bool)
    assert edge_aware_smoothness(depth, img, invalid).item() == pytest.approx(expected, rel=1e-12)
    edge_img = img.clone().reshape(1, 8, 8, 3)
    edge_img[:, :, ::2] = 0.8  # a colour edge between every pair of columns damps the term by exp(-0.5)
    damped = edge_aware_smoothness(depth, edge_img.reshape(1, 64, 3), invalid).item()
    assert damped == pytest.approx(expected * np.exp(-0.5), rel=1e-12)
    assert edge_aware_smoothness(depth, img, ~invalid).item() == 0.0


# --- KD ------------------------------------------------------------------------------------------------


def test_kd_loss_hand_example():
    student = torch.tensor([0.0, 5.0, -1.0, 3.0], requires_grad=True)
    teacher = torch.tensor([1.0, 9.0, -1.0, -50.0], requires_grad=True)
    invalid = torch.tensor([False, False, False, True])
    sp = np.log1p(np.exp([0.0, 1.0]))  # softplus(0), softplus(1)
    expected = (abs(sp[0] - sp[1]) + abs(2.0 - 2.0) + 0.0) / 3  # softplus(5), softplus(9) both clip to 2
    loss = kd_density_loss(student, teacher, invalid)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert teacher.grad is None and student.grad is not None and student.grad[3] == 0


def test_kd_loss_without_valid_points_is_zero_not_nan():
    loss = kd_density_loss(torch.ones(5), torch.zeros(5), torch.ones(5, dtype=torch.bool))
    assert loss.item() == 0.0


def test_kd_loss_matches_golden_value():
    data = load_io("mvbts_r18_io.npz")
    student, teacher = torch.from_numpy(data["sigma_raw_student"]), torch.from_numpy(data["sigma_raw_teacher"])
    invalid, expected = torch.from_numpy(data["invalid"]), float(data["kd_l1_view0valid"])
    assert kd_density_loss(student, teacher, invalid).item() == pytest.approx(expected, rel=1e-6)


# --- combined ------------------------------------------------------------------------------------------


def test_reconstruction_loss_combines_terms_with_lambda():
    B, R, S, Vr = 1, 128, 4, 2
    gen = torch.Generator().manual_seed(4)
    weights = torch.softmax(torch.rand(B, R, S, generator=gen), dim=-1)
    render = RenderOutput(
        depth=3 + 20 * torch.rand(B, R, generator=gen),
        weights=weights,
        alphas=torch.ones(B, R, S),
        t_samples=torch.ones(B, R, S),
        sigma=torch.ones(B, R, S),
        rgb=torch.rand(B, R, Vr, 3, generator=gen),
        invalid=torch.zeros(B, R, S, Vr, dtype=torch.bool),
    )
    target = torch.rand(B, R, 3, generator=gen)
    cfg = LossConfig()
    terms = reconstruction_loss(render, target, cfg)
    no_invalid = torch.zeros(B, R, dtype=torch.bool)
    assert terms.photometric.item() == pytest.approx(photometric_loss(render.rgb, target, no_invalid).item())
    assert terms.smoothness.item() == pytest.approx(edge_aware_smoothness(render.depth, target, no_invalid).item())
    expected_total = 2.0 * terms.photometric + 1e-3 * terms.smoothness  # the official double photometric term
    assert terms.total.item() == pytest.approx(expected_total.item())
