"""Training losses (REFERENCE 4.1, 5): photometric l1+ssim, edge-aware smoothness, density KD.

Pure functions over rendered patches. Rays come from :class:`models.rays.PatchRaySampler`, ordered
(patch, row, col), so per-ray tensors (B, R, ...) reshape to (B, P, p, p, ...) with R = P p^2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from models.rendering import RenderOutput

# Official 3 x 3 Gaussian SSIM window (REFERENCE 5.1); it sums to ~1.
SSIM_WINDOW = (
    (0.0947, 0.1183, 0.0947),
    (0.1183, 0.1478, 0.1183),
    (0.0947, 0.1183, 0.0947),
)
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
MAX_DEPTH = 80.0  # disparity clamp of the smoothness term


@dataclass(frozen=True)
class LossConfig:
    """Weights and constants of the BTS / KDBTS objective (official values as defaults).

    ``lambda_photometric`` is 2 because that is what the official code optimises: with no fine pass it copies
    the coarse render into the "fine" slot and adds the photometric term for both (REFERENCE 5.3), while the
    smoothness and KD terms are added once. Adam makes the overall scale irrelevant, not the ratio between the
    terms; 1.0 gives the objective the official configs suggest (half the photometric weight).
    """

    patch_size: int = 8
    ssim_weight: float = 0.85  # the l1 weight is 1 - ssim_weight
    invalid_threshold: float = 0.9  # weight-guided invalid policy
    lambda_photometric: float = 2.0
    lambda_smoothness: float = 1e-3
    lambda_kd: float = 0.0  # weight of :func:`kd_density_loss` (KDBTS: 1e-2); 0 switches it off
    kd_density_clip: float = 2.0
    kd_student_head: str = "single_view"
    kd_teacher_head: str = "multi_view"


@dataclass
class LossTerms:
    """Scalar loss terms; ``total = lambda_photometric * photometric + lambda_smoothness * smoothness
    + lambda_kd * kd``. ``invalid_ratio`` is the share of rays the weight-guided mask dropped (no gradient)."""

    total: Tensor
    photometric: Tensor
    smoothness: Tensor
    invalid_ratio: Tensor
    kd: Tensor | None = None  # None when the KD term is off


def to_patches(values: Tensor, patch_size: int) -> Tensor:
    """Per-ray values (B, R, ...) -> (B, P, p, p, ...)."""
    B, R = values.shape[:2]
    P = R // (patch_size * patch_size)
    return values.reshape(B, P, patch_size, patch_size, *values.shape[2:])


def ssim_error(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel SSIM error ``clamp(1 - SSIM, 0, 1) / 2`` of images (N, C, h, w) -> (N, C, h, w).

    3 x 3 Gaussian window, zero padding (the official ``pad_reflection=False``).
    """
    C = x.shape[1]
    window = torch.tensor(SSIM_WINDOW, dtype=x.dtype, device=x.device).expand(C, 1, 3, 3)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, padding=1, groups=C)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov_xy = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return torch.clamp(1.0 - numerator / denominator, 0.0, 1.0) / 2.0


def photometric_error(pred: Tensor, target: Tensor, ssim_weight: float = 0.85) -> Tensor:
    """Per-pixel l1+ssim error of images (N, C, h, w) -> (N, h, w), channel-averaged."""
    ssim = ssim_error(pred, target).mean(dim=1)
    l1 = (pred - target).abs().mean(dim=1)
    return ssim_weight * ssim + (1.0 - ssim_weight) * l1


def weight_guided_invalid(weights: Tensor, invalid: Tensor, threshold: float = 0.9) -> Tensor:
    """Rays to drop (B, R) bool: the weight on invalid samples exceeds ``threshold`` in ALL render views.

    ``weights`` (B, R, S), ``invalid`` (B, R, S, Vr).
    """
    invalid_weight = (weights[..., None] * invalid.to(weights.dtype)).sum(dim=2)  # (B, R, Vr)
    return (invalid_weight > threshold).all(dim=-1)


def from_patches(values: Tensor) -> Tensor:
    """Inverse of :func:`to_patches`: (B, P, p, p, ...) -> (B, R, ...)."""
    B, P, p = values.shape[:3]
    return values.reshape(B, P * p * p, *values.shape[4:])


def photometric_errors(rgb: Tensor, target: Tensor, patch_size: int = 8, ssim_weight: float = 0.85) -> Tensor:
    """Per-pixel l1+ssim error of each render view's reconstruction, (B, R, Vr).

    ``rgb`` (B, R, Vr, 3) rendered per render view, ``target`` (B, R, 3); SSIM is computed on each patch.
    """
    pred = to_patches(rgb, patch_size)  # (B, P, p, p, Vr, 3)
    B, P, p, _, Vr, C = pred.shape
    gt = to_patches(target, patch_size)[:, :, :, :, None].expand_as(pred)
    pred = pred.permute(0, 1, 4, 5, 2, 3).reshape(B * P * Vr, C, p, p)
    gt = gt.permute(0, 1, 4, 5, 2, 3).reshape(B * P * Vr, C, p, p)
    errors = photometric_error(pred, gt, ssim_weight).reshape(B, P, Vr, p, p)
    return from_patches(errors.permute(0, 1, 3, 4, 2))  # (B, P, p, p, Vr) -> (B, R, Vr)


def photometric_loss(
    rgb: Tensor, target: Tensor, ray_invalid: Tensor, patch_size: int = 8, ssim_weight: float = 0.85
) -> Tensor:
    """Min-over-render-views l1+ssim loss, averaged over all pixels (dropped rays count as 0).

    ``rgb`` (B, R, Vr, 3) rendered per render view, ``target`` (B, R, 3), ``ray_invalid`` (B, R).
    """
    errors = photometric_errors(rgb, target, patch_size, ssim_weight).amin(dim=-1)  # (B, R): the best view
    return (errors * (1.0 - ray_invalid.to(errors.dtype))).mean()


def smoothness_map(depth: Tensor, target: Tensor, patch_size: int = 8) -> Tensor:
    """Edge-aware smoothness of the mean-normalised disparity of each patch, per pixel (B, R).

    ``depth`` (B, R) rendered distance, ``target`` (B, R, 3) colours. A pixel holds its difference to the
    right and to the lower neighbour; the last column / row have none (zero padding, as officially).
    """
    disp = 1.0 / to_patches(depth, patch_size).clamp(1e-3, MAX_DEPTH)  # (B, P, p, p)
    disp = disp / disp.mean(dim=(2, 3), keepdim=True)
    img = to_patches(target, patch_size)  # (B, P, p, p, 3)
    disp_dx = (disp[..., :, 1:] - disp[..., :, :-1]).abs()  # (B, P, p, p - 1)
    disp_dy = (disp[..., 1:, :] - disp[..., :-1, :]).abs()  # (B, P, p - 1, p)
    img_dx = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().mean(dim=-1)
    img_dy = (img[:, :, 1:] - img[:, :, :-1]).abs().mean(dim=-1)
    err = F.pad(disp_dx * torch.exp(-img_dx), (0, 1)) + F.pad(disp_dy * torch.exp(-img_dy), (0, 0, 0, 1))
    return from_patches(err)


def edge_aware_smoothness(depth: Tensor, target: Tensor, ray_invalid: Tensor, patch_size: int = 8) -> Tensor:
    """:func:`smoothness_map` averaged over all pixels, dropped rays counting as 0; ``ray_invalid`` (B, R)."""
    err = smoothness_map(depth, target, patch_size)
    return (err * (1.0 - ray_invalid.to(err.dtype))).mean()


def kd_density_loss(student_raw: Tensor, teacher_raw: Tensor, invalid_view0: Tensor, clip: float = 2.0) -> Tensor:
    """L1 between clipped student and (detached) teacher densities over points valid in view 0.

    ``student_raw``, ``teacher_raw``: pre-softplus head outputs (...); ``invalid_view0`` (...) bool.
    Returns 0 (with a gradient path) when no point is valid, where the official mean would be NaN.
    """
    student = F.softplus(student_raw).clamp(0.0, clip)
    teacher = F.softplus(teacher_raw.detach()).clamp(0.0, clip)
    valid = ~invalid_view0
    diff = (student - teacher).abs()[valid]
    return diff.mean() if diff.numel() > 0 else diff.sum()


def reconstruction_loss(render: RenderOutput, target: Tensor, cfg: LossConfig) -> LossTerms:
    """Photometric + smoothness terms for patch rays; ``target`` (B, R, 3) are the loss-frame colours."""
    ray_invalid = weight_guided_invalid(render.weights, render.invalid, cfg.invalid_threshold)
    photometric = photometric_loss(render.rgb, target, ray_invalid, cfg.patch_size, cfg.ssim_weight)
    smoothness = edge_aware_smoothness(render.depth, target, ray_invalid, cfg.patch_size)
    return LossTerms(
        total=cfg.lambda_photometric * photometric + cfg.lambda_smoothness * smoothness,
        photometric=photometric,
        smoothness=smoothness,
        invalid_ratio=ray_invalid.float().mean(),
    )


def training_loss(render: RenderOutput, target: Tensor, cfg: LossConfig) -> LossTerms:
    """:func:`reconstruction_loss`, plus ``lambda_kd`` times the density distillation from the teacher head to
    the student head on the rendered ray samples (REFERENCE 4.1) when ``lambda_kd > 0``."""
    terms = reconstruction_loss(render, target, cfg)
    if cfg.lambda_kd <= 0.0:
        return terms
    heads = render.head_outputs
    for role, name in (("student", cfg.kd_student_head), ("teacher", cfg.kd_teacher_head)):
        if name not in heads:
            raise KeyError(f"KD {role} head {name!r} is not among the rendered heads {sorted(heads)}")
    if render.field_invalid is None:
        raise ValueError("the KD loss needs the per-view invalid mask of the rendered samples (field_invalid)")
    kd = kd_density_loss(
        heads[cfg.kd_student_head], heads[cfg.kd_teacher_head], render.field_invalid[..., 0], cfg.kd_density_clip
    )
    return replace(terms, total=terms.total + cfg.lambda_kd * kd, kd=kd)
