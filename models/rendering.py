"""Volume rendering of a density field with image-based colour (REFERENCE 2.4, 2.5).

Pure functions: ``render_rays(rays, field, render_views, ...)`` is a function of its arguments only.
A density field is any callable ``field(samples: RaySamples) -> FieldOutput``; the renderer calls it with the
``S`` samples of the ``R`` rays (``samples.points`` (B, R, S, 3)) and reads ``N = R S`` answers ordered (ray, sample).

Official conventions kept (decision 1): stratified samples in inverse depth, ``delta_last = 1e10``,
the last alpha forced to 1 (every ray terminates by the last sample), ``1e-10`` inside the
transmittance product, colours sampled with ``align_corners=False`` and border padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.field_output import FieldOutput, query_in_chunks
from models.rays import ImageRaySampler, RayBundle, RaySamples, RaysInCameras, distance_to_z
from utils.geometry import Z_EPS, project, transform_points

DensityField = Callable[[RaySamples], FieldOutput]

LAST_DELTA = 1e10  # official: the last interval is "infinite"
TRANSMITTANCE_EPS = 1e-10  # official: added to (1 - alpha) in the transmittance product


@dataclass
class RenderViews:
    """The ``Vr`` frames colours are sampled from (REFERENCE 2.5)."""

    colors: Tensor  # (B, Vr, 3, H, W), in [0, 1]
    K_norm: Tensor  # (B, Vr, 3, 3)
    world_to_cam: Tensor  # (B, Vr, 4, 4)


@dataclass
class RenderOutput:
    """What rendering ``R`` rays with ``S`` samples each, ``Vr`` render views, gives."""

    depth: Tensor  # (B, R), expected distance along the unit ray
    weights: Tensor  # (B, R, S)
    alphas: Tensor  # (B, R, S)
    t_samples: Tensor  # (B, R, S), sample distances
    sigma: Tensor  # (B, R, S), density after softplus
    rgb: Tensor  # (B, R, Vr, 3), composited colour per render view
    invalid: Tensor  # (B, R, S, Vr) bool, colour invalid in v OR feature-invalid in all encoder views
    head_outputs: dict[str, Tensor] = dataclasses.field(default_factory=dict)  # name -> (B, R, S) raw head outputs
    field_invalid: Tensor | None = None  # (B, R, S, Ve) bool, per encoder view (for the KD mask)


def draw_jitter(
    batch_size: int,
    num_rays: int,
    num_samples: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Offsets U(0, 1) of the stratified samples inside their bins, (B, R, S) (a random choice of a training step).

    Drawn on the generator's device, so a seeded CPU generator also works for GPU rays.
    """
    rng_device = generator.device if generator is not None else device
    jitter = torch.rand(batch_size, num_rays, num_samples, generator=generator, device=rng_device, dtype=dtype)
    return jitter.to(device)


def sample_distances(
    batch_size: int,
    num_rays: int,
    near: float,
    far: float,
    num_samples: int = 64,
    jitter: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Stratified distances, uniform in inverse depth (official ``lindisp``), (B, R, S).

    ``t_k = (k + jitter_k) / S`` with ``jitter`` (B, R, S) in [0, 1) (:func:`draw_jitter`; None: 0, the
    deterministic samples of evaluation), then ``d = 1 / ((1 - t) / near + t / far)``.
    """
    S = num_samples
    steps = torch.linspace(0.0, 1.0 - 1.0 / S, S, device=device, dtype=dtype)  # (S,)
    t = steps.expand(batch_size, num_rays, S)
    if jitter is not None:
        if jitter.shape != t.shape:
            raise ValueError(f"jitter has shape {tuple(jitter.shape)}, expected {tuple(t.shape)} (B, R, S)")
        t = t + jitter.to(device=t.device, dtype=dtype) / S
    return 1.0 / ((1.0 / near) * (1.0 - t) + (1.0 / far) * t)


def composite_weights(sigma: Tensor, distances: Tensor) -> tuple[Tensor, Tensor]:
    """Alpha compositing along the last dimension: sigma, distances (..., S) -> (weights, alphas) (..., S)."""
    deltas = distances[..., 1:] - distances[..., :-1]  # (..., S - 1)
    alphas = 1.0 - torch.exp(-deltas * torch.relu(sigma[..., :-1]))
    # Hard alpha cap: the last sample is opaque (its delta of 1e10 would give ~1 anyway for sigma > 0).
    alphas = torch.cat([alphas, torch.ones_like(alphas[..., :1])], dim=-1)  # (..., S)
    transmittance = torch.cumprod(1.0 - alphas + TRANSMITTANCE_EPS, dim=-1)
    transmittance = torch.cat([torch.ones_like(transmittance[..., :1]), transmittance[..., :-1]], dim=-1)
    return alphas * transmittance, alphas


def _lookup(views: RenderViews, uv: Tensor) -> Tensor:
    """Bilinear colours (border padding, align_corners=False) at uv (B, Vr, N, 2) -> (B, N, Vr, 3)."""
    B, Vr, C, H, W = views.colors.shape
    N = uv.shape[2]
    sampled = F.grid_sample(
        views.colors.reshape(B * Vr, C, H, W), uv.reshape(B * Vr, 1, N, 2), "bilinear", "border", align_corners=False
    )  # (B Vr, C, 1, N)
    return sampled.reshape(B, Vr, C, N).permute(0, 3, 1, 2)


def sample_colors(points: Tensor, views: RenderViews) -> tuple[Tensor, Tensor]:
    """Colours of world points (B, N, 3) in every render view.

    Returns colours (B, N, Vr, 3) (bilinear, border padding, align_corners=False) and
    ``invalid`` (B, N, Vr): the point is behind or outside the view (official rule).
    """
    points_cam = transform_points(views.world_to_cam, points[:, None])  # (B, Vr, N, 3)
    uv, _, invalid = project(points_cam, views.K_norm[:, :, None])  # (B, Vr, N, 2), (B, Vr, N)
    return _lookup(views, uv), invalid.permute(0, 2, 1)


def sample_colors_along(samples: RaySamples, views: RenderViews) -> tuple[Tensor, Tensor]:
    """:func:`sample_colors` of ray samples: colours (B, R, S or 1, Vr, 3) and invalid (B, R, S, Vr).

    Rays cast from the render cameras themselves (rendering a render view, the input image's in the scripts and
    the protocols) see one pixel of each: its colour is looked up once per ray (size 1 along S, broadcast).
    """
    B, R, S = samples.t.shape
    rays = RaysInCameras.of(views.world_to_cam, samples)
    if not rays.from_every_camera(samples.t[..., 0]):
        colors, invalid = sample_colors(samples.points.reshape(B, R * S, 3), views)
        return colors.reshape(B, R, S, -1, 3), invalid.reshape(B, R, S, -1)
    uv, dz, _ = project(rays.directions, views.K_norm[:, :, None])  # (B, Vr, R, 2), (B, Vr, R)
    z = rays.origins[..., 2:3] + samples.t.unsqueeze(1) * dz.unsqueeze(-1)  # (B, Vr, R, S)
    invalid = (z <= Z_EPS) | (uv.abs() > 1.0).any(dim=-1, keepdim=True)  # (B, Vr, R, S), the official rule
    return _lookup(views, uv).unsqueeze(2), invalid.permute(0, 2, 3, 1)


def render_rays(
    rays: RayBundle,
    field: DensityField,
    render_views: RenderViews,
    samples_per_ray: int = 64,
    jitter: Tensor | None = None,
    field_chunk_size: int | None = None,
) -> RenderOutput:
    """Render ``rays`` (B, R) through ``field`` with colours from ``render_views``.

    ``jitter`` (B, R, S): the stratified sample offsets (training, :func:`draw_jitter`); None renders the
    deterministic samples. The field is called once on all rays, or ``field_chunk_size`` rays at a time (the
    same values; smaller working sets run faster on a CPU).
    """
    B, R = rays.shape
    S = samples_per_ray
    dtype, device = rays.origins.dtype, rays.origins.device
    t = sample_distances(B, R, rays.near, rays.far, S, jitter, device, dtype)  # (B, R, S)
    samples = RaySamples.along(rays.origins, rays.directions, t)

    out = query_in_chunks(field, samples, field_chunk_size)
    sigma = out.sigma.reshape(B, R, S)
    weights, alphas = composite_weights(sigma, t)
    depth = (weights * t).sum(dim=-1)  # (B, R)

    colors, color_invalid = sample_colors_along(samples, render_views)  # (B, R, S or 1, Vr, 3), (B, R, S, Vr)
    rgb = (weights[..., None, None] * colors).sum(dim=2)  # (B, R, Vr, 3)
    # A point no encoder view sees carries no information, so it cannot explain any colour.
    invalid_everywhere = out.invalid.all(dim=-1, keepdim=True).reshape(B, R, S, 1)
    invalid = color_invalid | invalid_everywhere  # (B, R, S, Vr)

    return RenderOutput(
        depth=depth,
        weights=weights,
        alphas=alphas,
        t_samples=t,
        sigma=sigma,
        rgb=rgb,
        invalid=invalid,
        head_outputs={name: raw.reshape(B, R, S) for name, raw in out.head_outputs.items()},
        field_invalid=out.invalid.reshape(B, R, S, -1),
    )


@dataclass
class ImageRender:
    """The pixels of one camera for each of ``B`` scenes: depth and the colour composited from each render view."""

    depth: Tensor  # (B, H, W), camera z-depth; NaN at pixels that were not rendered
    rgb: Tensor  # (B, Vr, 3, H, W), in [0, 1]
    invalid_weight: Tensor  # (B, Vr, H, W), the ray weight on samples invalid for that render view


def render_image(
    field: DensityField,
    sampler: ImageRaySampler,
    K_norm: Tensor,
    cam_to_world: Tensor,
    render_views: RenderViews,
    pixels: Tensor | None = None,
    samples_per_ray: int = 64,
    ray_chunk_size: int = 4096,
) -> ImageRender:
    """Render every pixel of a camera (``K_norm`` (B, 3, 3), ``cam_to_world`` (B, 4, 4), the image size and
    near/far of ``sampler``) with deterministic samples, ``ray_chunk_size`` rays at a time.

    ``pixels`` (R,) flat row-major indices renders only those pixels (NaN elsewhere); each ray is rendered on its
    own, so they equal the full image's. Only the per-pixel results are kept per chunk, so memory is bounded by
    one chunk's samples. The one full-image path of validation, evaluation, the render scripts and the videos.
    """
    B = K_norm.shape[0]
    rays = sampler(K_norm[:, None], cam_to_world[:, None], 0, pixels)  # (B, R)
    R, Vr = rays.shape[1], render_views.colors.shape[1]
    depth = K_norm.new_empty(B, R)
    rgb = K_norm.new_empty(B, R, Vr, 3)
    invalid_weight = K_norm.new_empty(B, R, Vr)
    for i in range(0, R, ray_chunk_size):
        chunk = rays.slice(i, i + ray_chunk_size)
        out = render_rays(chunk, field, render_views, samples_per_ray)
        depth[:, i : i + ray_chunk_size] = distance_to_z(out.depth, chunk.directions_cam)
        rgb[:, i : i + ray_chunk_size] = out.rgb
        invalid_weight[:, i : i + ray_chunk_size] = (out.weights[..., None] * out.invalid).sum(dim=2)
    return ImageRender(
        depth=sampler.to_image(depth, pixels),
        rgb=sampler.to_image(rgb, pixels).permute(0, 3, 4, 1, 2),  # (B, H, W, Vr, 3) -> (B, Vr, 3, H, W)
        invalid_weight=sampler.to_image(invalid_weight, pixels).permute(0, 3, 1, 2),
    )
