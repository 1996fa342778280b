"""Image-conditioned density field: encode views once, then query densities of 3D points (REFERENCE 2.2, 3.1).

    scene = field.encode(images, K_norm, cam_to_world)              # EncodedScene, nothing kept on `field`
    out = field.query(scene, points_world, density_head="single_view")  # FieldOutput
    render(..., field_fn=field.field_fn(scene, "single_view"))       # what the renderer calls

A point is projected into every encoder view; the feature map is sampled there and concatenated with the
positional encoding of (u, v, z~) to give a 103-d input per view. Every head runs on those inputs (so the
KD loss sees teacher and student on the same points); the head named by the caller gives sigma.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.encoder import ImageEncoder
from models.field_output import FieldOutput, query_in_chunks
from models.heads import PartsLinear, ViewInputs
from models.positional_encoding import encoded_dim, positional_encoding
from models.rays import RaySamples, RaysInCameras
from utils.geometry import Z_EPS, invert_pose, project, transform_points

DensityFn = Callable[[Tensor], tuple[Tensor, Tensor]]  # points (N, 3) -> sigma (N,), invalid in every view (N,)


@dataclass
class EncodedScene:
    """Everything a query needs about the encoder views of ``B`` scenes."""

    features: Tensor  # (B, Ve, C, H, W), scale-0 feature maps
    K_norm: Tensor  # (B, Ve, 3, 3), intrinsics normalised to [-1, 1]
    world_to_cam: Tensor  # (B, Ve, 4, 4)

    @property
    def num_views(self) -> int:
        return self.features.shape[1]


def inverse_depth_code(z: Tensor, z_near: float, z_far: float) -> Tensor:
    """Camera depth (...) -> inverse-depth code (...): -1 at ``z_far``, +1 at ``z_near``.

    ``z~ = 2 (1/max(z, 1e-3) - 1/far) / (1/near - 1/far) - 1``; unbounded for points near the camera plane
    (about 6233 at z <= 1e-3 for near 3, far 80), as officially.
    """
    code = (1.0 / z.clamp_min(Z_EPS) - 1.0 / z_far) / (1.0 / z_near - 1.0 / z_far)
    return 2.0 * code - 1.0


def _grid_sample(features: Tensor, uv: Tensor) -> Tensor:
    """(B, C, H, W), (B, N, 2) -> (B, N, C): ``F.grid_sample``, bilinear, border padding, align_corners=False."""
    sampled = F.grid_sample(features, uv.unsqueeze(2), mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.squeeze(-1).transpose(1, 2)  # (B, C, N, 1) -> (B, N, C)


def _grid_sample_views(maps: Tensor, uv: Tensor) -> Tensor:
    """:func:`_grid_sample` of every view's map: (B, Ve, D, H, W), (B, Ve, N, 2) -> (B, N, Ve, D), a transposed view."""
    B, Ve, D, H, W = maps.shape
    sampled = _grid_sample(maps.reshape(B * Ve, D, H, W), uv.reshape(B * Ve, -1, 2))  # (B Ve, N, D)
    return sampled.reshape(B, Ve, -1, D).transpose(1, 2)


def bilinear_corners(uv: Tensor, height: int, width: int) -> tuple[list[Tensor], list[Tensor]]:
    """Where :func:`_grid_sample` reads for uv (..., 2): the flat pixel index ``y * W + x`` (...) and the weight (...)
    of each of the four corners (nw, ne, sw, se). Border padding clamps the pixel coordinate to the image first; a
    corner past the last pixel (then at weight 0) is clamped onto it.

    The pixel coordinate is ``(u + 1) W / 2 - 0.5`` rounded once to float32, as PyTorch's CPU kernel makes it (a
    fused multiply-add): rounding twice moves a weight by up to ~4e-5 at x ~ 600, which the sampled values show."""
    x, y = ((uv.detach() + 1.0).double() * uv.new_tensor([width / 2, height / 2], dtype=torch.float64) - 0.5).unbind(-1)
    x, y = x.to(uv.dtype).clamp(0.0, width - 1), y.to(uv.dtype).clamp(0.0, height - 1)
    x0, y0 = x.floor(), y.floor()
    wx1, wy1 = x - x0, y - y0
    wx0, wy0 = 1.0 - wx1, 1.0 - wy1
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp_max(width - 1), (y0 + 1).clamp_max(height - 1)
    index = [y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1]
    return index, [wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1]


# Points per block of the lookup's CPU forward and backward: a block's rows (8192 x 64 floats, 2 MB) stay in the L2
# cache while they are read and added. Measured (2026-12-06, official size, the points of a real step): the MVBTS
# 2-view lookup backward 0.105-0.111 -> 0.044-0.049 s per call, BTS 0.020-0.022 -> 0.014-0.017 s.
LOOKUP_BLOCK = 8192


def _blocks(n: int) -> Iterator[slice]:
    """Consecutive slices of :data:`LOOKUP_BLOCK` rows (the last one shorter) covering ``n`` rows."""
    return (slice(start, min(start + LOOKUP_BLOCK, n)) for start in range(0, n, LOOKUP_BLOCK))


def _corner_rows(maps_shape: torch.Size, uv: Tensor, dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
    """For maps (B, Ve, D, H, W) seen as rows (B Ve H W, D) and uv (B, Ve, N, 2): each corner's row index and weight
    (in the maps' ``dtype``) per point, both flat in the lookup's output order (b, n, v): (B N Ve,) and (B N Ve, 1)."""
    B, Ve, _, H, W = maps_shape
    index, weight = bilinear_corners(uv.transpose(1, 2), H, W)  # each (B, N, Ve)
    first_row = (torch.arange(B * Ve, device=uv.device) * (H * W)).view(B, 1, Ve)  # each map's block of rows
    return [(i + first_row).reshape(-1) for i in index], [w.reshape(-1, 1).to(dtype) for w in weight]


class _SampleFeatures(torch.autograd.Function):
    """The CPU training lookup: :func:`_grid_sample` of every encoder view's map, answered in the (B, N, Ve, D)
    layout the heads multiply (contiguous: no transposing copy after it), with a backward (to the maps only) that
    adds each point's gradient row into a channels-last buffer with ``index_add_``, where PyTorch's CPU
    ``grid_sampler_2d_backward`` writes a corner's D values H W floats apart. Channels-last maps (the NHWC trunk's)
    are read the same way, row by row, a block of points at a time; others go through ``grid_sample``. The same
    weights as ``grid_sample`` (:func:`bilinear_corners`), the sums in another order (float32 rounding); the gradient
    comes back with channels-last strides (no copy). Measured (README, "Performance")."""

    @staticmethod
    def forward(ctx, maps: Tensor, uv: Tensor) -> Tensor:
        ctx.save_for_backward(uv)
        ctx.shape = maps.shape
        B, Ve, D, H, W = maps.shape
        rows = maps.permute(0, 1, 3, 4, 2)  # (B, Ve, H, W, D): a view of rows when the maps are channels-last
        if not rows.is_contiguous():
            return _grid_sample_views(maps, uv).contiguous()
        rows = rows.view(-1, D)
        (first, *others), (w_first, *w_others) = _corner_rows(maps.shape, uv, maps.dtype)
        out = maps.new_empty(first.shape[0], D)
        block = maps.new_empty(min(LOOKUP_BLOCK, out.shape[0]), D)
        # A block of points at a time: each corner's rows are gathered into a cache-sized buffer and added while
        # still there; nw, ne, sw, se in grid_sample's order.
        for rows_of in _blocks(out.shape[0]):
            acc, gathered = out[rows_of], block[: rows_of.stop - rows_of.start]
            torch.mul(torch.index_select(rows, 0, first[rows_of], out=gathered), w_first[rows_of], out=acc)
            for corner, w in zip(others, w_others, strict=True):
                acc.addcmul_(torch.index_select(rows, 0, corner[rows_of], out=gathered), w[rows_of])
        return out.view(B, -1, Ve, D)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (uv,) = ctx.saved_tensors
        B, Ve, D, H, W = ctx.shape
        grad = grad.contiguous().view(-1, D)  # (B N Ve, D), already contiguous from the heads' matrix products
        # Corners and weights made again rather than kept from the forward: a few elementwise passes over the points
        # instead of 48 bytes per point and view held until the backward of every chunk.
        index, weight = _corner_rows(ctx.shape, uv, grad.dtype)
        rows = grad.new_zeros(B * Ve * H * W, D)
        # A block of points at a time, so each corner's weighted rows are made in a cache-sized buffer and added
        # while still there (the whole (B N Ve, D) product per corner went through memory and back); a block's
        # points are neighbours along rays, so the rows they add into are mostly in cache too.
        block = grad.new_empty(min(LOOKUP_BLOCK, grad.shape[0]), D)
        for rows_of in _blocks(grad.shape[0]):
            for corner, w in zip(index, weight, strict=True):
                weighted = torch.mul(grad[rows_of], w[rows_of], out=block[: rows_of.stop - rows_of.start])
                rows.index_add_(0, corner[rows_of], weighted)
        return rows.view(B, Ve, H, W, D).permute(0, 1, 4, 2, 3), None  # channels-last strides, no copy


def sample_features(maps: Tensor, uv: Tensor) -> Tensor:
    """Bilinear feature lookup of every encoder view: maps (B, Ve, D, H, W), uv in [-1, 1] (B, Ve, N, 2) -> the
    points' features (B, N, Ve, D), the layout the heads read.

    ``align_corners=False`` (u = -1 is the left edge of pixel 0) and border padding, as officially; points
    outside the image keep the border feature (``learn_empty: false``). In training on a CPU (maps with a
    gradient, uv without) :class:`_SampleFeatures` (a contiguous answer and its own backward); elsewhere
    ``grid_sample`` (a transposed view).
    """
    if maps.requires_grad and not uv.requires_grad and maps.device.type == "cpu" and torch.is_grad_enabled():
        return _SampleFeatures.apply(maps, uv)
    return _grid_sample_views(maps, uv)


def encoding_columns(channels: Sequence[int], num_freqs: int, offset: int, d_code: int = 3) -> Tensor:
    """Where :func:`positional_encoding` of ``code[..., channels]`` (input included) sits in the official head input
    ``[feature (offset), code (d_code), per frequency: sin (d_code), cos (d_code)]``: a LongTensor of columns."""
    columns = [offset + c for c in channels]
    for k in range(num_freqs):
        base = offset + d_code + 2 * d_code * k
        columns += [base + c for c in channels] + [base + d_code + c for c in channels]
    return torch.tensor(columns, dtype=torch.long)


def project_features(features: Tensor, layer: nn.Linear) -> Tensor:
    """A head's first layer applied to every pixel of the feature maps (B, Ve, C, H, W) -> (B, Ve, hidden, H, W),
    with the layer's feature columns (the first C). Bilinear sampling is linear, so sampling this map gives what
    multiplying the sampled features would (up to float32 rounding), for a map-sized cost instead of a per-point one.
    """
    B, Ve, C, H, W = features.shape
    weight = layer.weight[:, :C, None, None]  # (hidden, C, 1, 1)
    return F.conv2d(features.reshape(B * Ve, C, H, W), weight).reshape(B, Ve, -1, H, W)


def view_inputs(
    scene: EncodedScene,
    points_world: Tensor,
    z_near: float,
    z_far: float,
    num_freqs: int,
    freq_factor: float,
    projected: Tensor | None = None,
) -> tuple[ViewInputs, Tensor]:
    """Per-view head inputs for world points (B, N, 3).

    Returns the :class:`ViewInputs` parts (B, N, Ve, .) [sampled feature (C), positional encoding of (u, v, z~)]
    and ``invalid`` (B, N, Ve). With ``projected`` (:func:`project_features` of one head) the sampled projection
    is the inputs' ``hidden_offset`` instead of the feature part.
    """
    B, Ve, C, H, W = scene.features.shape
    points_cam = transform_points(scene.world_to_cam, points_world.unsqueeze(1))  # (B, Ve, N, 3)
    uv, z, invalid = project(points_cam, scene.K_norm.unsqueeze(2))  # (B, Ve, N, 2), (B, Ve, N), (B, Ve, N)
    code = torch.cat([uv, inverse_depth_code(z, z_near, z_far).unsqueeze(-1)], dim=-1)  # (B, Ve, N, 3)
    pe = positional_encoding(code.transpose(1, 2), num_freqs, freq_factor, include_input=True)  # (B, N, Ve, P)
    maps = scene.features if projected is None else projected  # (B, Ve, C or hidden, H, W)
    feats = sample_features(maps, uv)  # (B, N, Ve, .)
    if projected is not None:
        return ViewInputs((pe,), (torch.arange(C, C + pe.shape[-1], device=pe.device),), feats), invalid.transpose(1, 2)
    return ViewInputs((feats, pe)), invalid.transpose(1, 2)


def ray_view_inputs(
    scene: EncodedScene,
    samples: RaySamples,
    rays: RaysInCameras,
    z_near: float,
    z_far: float,
    num_freqs: int,
    freq_factor: float,
) -> tuple[ViewInputs, Tensor]:
    """:func:`view_inputs` of ray samples whose rays all start at the centre of every encoder camera, every sample
    in front of it (rendering an encoder view; :meth:`models.rays.RaysInCameras.from_every_camera`): all samples of
    a ray project to one pixel of each view, so the feature and the encoding of (u, v) are computed once per ray and
    only z~ per sample.

    Returns :class:`ViewInputs` with parts (B, R, 1, Ve, .) and (B, R, S, Ve, .), and ``invalid`` (B, R, S, Ve).
    The values equal :func:`view_inputs` of the sample points up to float32 rounding.
    """
    B, Ve, C, H, W = scene.features.shape
    R, S = samples.t.shape[1:]
    uv, dz, _ = project(rays.directions, scene.K_norm.unsqueeze(2))  # (B, Ve, R, 2), (B, Ve, R)
    z = rays.origins[..., 2:3] + samples.t.unsqueeze(1) * dz.unsqueeze(-1)  # (B, Ve, R, S), camera z per sample
    outside = (uv.abs() > 1.0).any(dim=-1)  # (B, Ve, R)
    invalid = (z <= Z_EPS) | outside.unsqueeze(-1)  # (B, Ve, R, S), the official rule
    feats = sample_features(scene.features, uv).unsqueeze(2).contiguous()  # (B, R, 1, Ve, C)
    uv = uv.permute(0, 2, 1, 3).unsqueeze(2).contiguous()  # (B, R, 1, Ve, 2)
    z_code = inverse_depth_code(z, z_near, z_far).permute(0, 2, 3, 1).unsqueeze(-1).contiguous()  # (B, R, S, Ve, 1)
    parts = (
        feats,
        positional_encoding(uv, num_freqs, freq_factor, include_input=True),  # (B, R, 1, Ve, 26)
        positional_encoding(z_code, num_freqs, freq_factor, include_input=True),  # (B, R, S, Ve, 13)
    )
    columns = (
        torch.arange(C),
        encoding_columns((0, 1), num_freqs, offset=C),
        encoding_columns((2,), num_freqs, offset=C),
    )
    return ViewInputs(parts, tuple(c.to(feats.device) for c in columns)), invalid.permute(0, 2, 3, 1)


class ProjectedFeatures:
    """A head's first layer applied to the feature maps of a scene (:func:`project_features`), made once, on
    first use, without gradients."""

    def __init__(self, scene: EncodedScene, layer: PartsLinear) -> None:
        self.scene, self.layer, self._maps = scene, layer, None

    def maps(self) -> Tensor:
        if self._maps is None:
            with torch.no_grad():
                maps = project_features(self.scene.features, self.layer)  # (B, Ve, hidden, H, W)
                B, Ve, D, H, W = maps.shape
                # Channels last: a point's D values sit together, which the per-point bilinear lookups read faster.
                maps = maps.reshape(B * Ve, D, H, W).contiguous(memory_format=torch.channels_last)
                self._maps = maps.reshape(B, Ve, D, H, W)
        return self._maps


HeadFactory = Callable[..., nn.Module]  # d_in=... -> a head (a ``_partial_`` head config)


class DensityField(nn.Module):
    """Shared image encoder + named density heads (BTS: one head; MVBTS/KDBTS: teacher and student).

    ``heads`` maps names to head factories called with ``d_in``, the width of one view's head input (the encoder's
    ``d_out`` channels + the positional encoding: 64 + 39 = 103 officially). An empty entry (``model/head/none`` in a
    config, or None) leaves that slot out.
    """

    def __init__(
        self,
        encoder: ImageEncoder,
        heads: Mapping[str, HeadFactory | None],
        z_near: float = 3.0,
        z_far: float = 80.0,
        num_freqs: int = 6,
        freq_factor: float = 1.5,
    ) -> None:
        super().__init__()
        d_in = encoder.d_out + encoded_dim(3, num_freqs)
        heads = {name: make(d_in=d_in) for name, make in heads.items() if make}
        if not heads:
            raise ValueError("a DensityField needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.z_near = z_near
        self.z_far = z_far
        self.num_freqs = num_freqs
        self.freq_factor = freq_factor

    def encode(self, images: Tensor, K_norm: Tensor, cam_to_world: Tensor, flip: bool = False) -> EncodedScene:
        """Encode the encoder views: images in [-1, 1] (B, Ve, 3, H, W), K_norm (B, Ve, 3, 3),
        cam_to_world (B, Ve, 4, 4) -> :class:`EncodedScene`. ``flip``: training flip augmentation."""
        B, Ve = images.shape[:2]
        features = self.encoder(images.flatten(0, 1), flip=flip)  # (B*Ve, C, H, W)
        return EncodedScene(
            features=features.unflatten(0, (B, Ve)),
            K_norm=K_norm,
            world_to_cam=invert_pose(cam_to_world),
        )

    def view_inputs(
        self, scene: EncodedScene, points_world: Tensor, projected: Tensor | None = None
    ) -> tuple[ViewInputs, Tensor]:
        """World points (B, N, 3) -> head inputs (B, N, Ve, D), invalid (B, N, Ve). See :func:`view_inputs`."""
        args = (self.z_near, self.z_far, self.num_freqs, self.freq_factor)
        return view_inputs(scene, points_world, *args, projected=projected)

    def query(
        self,
        scene: EncodedScene,
        points_world: Tensor,
        density_head: str,
        all_heads: bool = False,
        projection: ProjectedFeatures | None = None,
    ) -> FieldOutput:
        """Densities of world points (B, N, 3) in ``scene``, sigma from the head named ``density_head``.

        The raw outputs (B, N) are in ``head_outputs`` by name: of ``density_head``, or of every head with
        ``all_heads`` (the KD loss reads teacher and student on the same points). ``projection``: the head's
        first layer applied to the feature maps (:class:`ProjectedFeatures`), used when no gradient is needed.
        """
        self._head(density_head)
        projected = projection.maps() if projection is not None and not torch.is_grad_enabled() else None
        inputs, invalid = self.view_inputs(scene, points_world, projected)  # parts (B, N, Ve, .), (B, N, Ve)
        return self._run_heads(inputs, invalid, density_head, all_heads)

    def projection(self, scene: EncodedScene, density_head: str) -> ProjectedFeatures | None:
        """For many queries of one head without gradients (full images, profiles, point clouds): the head's first
        layer applied once to the feature maps, made on first use; None for heads that read the whole vector."""
        layer = getattr(self._head(density_head), "first_layer", None)
        return ProjectedFeatures(scene, layer) if isinstance(layer, PartsLinear) else None

    def query_samples(
        self,
        scene: EncodedScene,
        samples: RaySamples,
        density_head: str,
        all_heads: bool = False,
        projection: ProjectedFeatures | None = None,
    ) -> FieldOutput:
        """Densities of ray samples (the renderer's call), N = R S answers ordered (ray, sample).

        Rays cast from the encoder cameras themselves (rendering an encoder view) take :func:`ray_view_inputs`:
        the feature and the (u, v) encoding once per ray, z~ per sample; other rays take :func:`view_inputs` of
        their points. Both give the same densities up to float32 rounding.
        """
        B, R, S = samples.t.shape
        rays = RaysInCameras.of(scene.world_to_cam, samples)
        if rays.from_every_camera(samples.t[..., 0]):
            args = (self.z_near, self.z_far, self.num_freqs, self.freq_factor)
            inputs, invalid = ray_view_inputs(scene, samples, rays, *args)  # invalid (B, R, S, Ve)
        else:
            points = samples.points.reshape(B, R * S, 3)
            projected = projection.maps() if projection is not None and not torch.is_grad_enabled() else None
            inputs, invalid = self.view_inputs(scene, points, projected)  # invalid (B, R S, Ve)
        out = self._run_heads(inputs, invalid, density_head, all_heads)
        return FieldOutput(
            sigma=out.sigma.reshape(B, R * S),
            invalid=out.invalid.reshape(B, R * S, -1),
            head_outputs={name: raw.reshape(B, R * S) for name, raw in out.head_outputs.items()},
        )

    def _head(self, name: str) -> nn.Module:
        if name not in self.heads:
            raise KeyError(f"unknown density head {name!r}; this model has {list(self.heads)}")
        return self.heads[name]

    def _run_heads(self, inputs: ViewInputs, invalid: Tensor, density_head: str, all_heads: bool) -> FieldOutput:
        """``density_head`` (or every head) on the inputs; sigma from ``density_head``."""
        names = list(self.heads) if all_heads else [density_head]
        raw = {name: self._head(name)(inputs, invalid) for name in names}  # each (...), like invalid[..., 0]
        return FieldOutput(sigma=F.softplus(raw[density_head]), invalid=invalid, head_outputs=raw)

    def query_chunked(
        self, scene: EncodedScene, points_world: Tensor, density_head: str, chunk_size: int
    ) -> FieldOutput:
        """:meth:`query` over ``chunk_size`` points at a time (any number of points, bounded memory); without
        gradients the head's first layer is applied to the feature maps once (:meth:`projection`)."""
        projection = self.projection(scene, density_head)
        query = partial(self.query, scene, density_head=density_head, projection=projection)
        return query_in_chunks(query, points_world, chunk_size)

    def density_fn(self, scene: EncodedScene, density_head: str, chunk_size: int) -> DensityFn:
        """The field of one encoded scene as ``points (N, 3) -> (sigma (N,), seen by no encoder view (N,))``, for
        occupancy grids, bird's-eye profiles and point clouds. The points may be of any float dtype and on any
        device: they are queried in float32 on the scene's device, and the answers come back where they came from.
        """
        device = scene.features.device
        projection = self.projection(scene, density_head)
        query = partial(self.query, scene, density_head=density_head, projection=projection)

        @torch.no_grad()
        def density(points: Tensor) -> tuple[Tensor, Tensor]:
            out = query_in_chunks(query, points[None].to(device, torch.float32), chunk_size)
            return out.sigma[0].float().to(points.device), out.invalid[0].all(dim=-1).to(points.device)

        return density

    def field_fn(
        self, scene: EncodedScene, density_head: str, all_heads: bool = False
    ) -> Callable[[RaySamples], FieldOutput]:
        """The renderer's view of this field for one encoded scene: :meth:`query_samples` as ``samples -> output``
        (one head, with its :meth:`projection` when no gradient is needed; every head with ``all_heads``)."""
        projection = None if all_heads else self.projection(scene, density_head)
        return partial(self.query_samples, scene, density_head=density_head, all_heads=all_heads, projection=projection)


# Head names of the shipped model configs, used by official-checkpoint conversion (models.checkpoint).
SINGLE_VIEW_HEAD = "single_view"
MULTI_VIEW_HEAD = "multi_view"
