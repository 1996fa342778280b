"""The training model of BTS, MVBTS and KDBTS: a density field plus the choices that turn a batch into rendered
patches (REFERENCE 2.6, 3.4, 4).

One class serves all three; they differ only in configuration:

* BTS: one ``single_view`` head, ``encoding_style="mono"`` (view 0 is the only encoder view).
* MVBTS: the ``multi_view`` fusion head renders; ``encoding_style`` / ``num_multiviews`` pick the encoder views.
* KDBTS: both heads; ``density_head`` (default the teacher) renders for the photometric loss, the student learns
  from the KD loss on the same ray samples (``models.losses.training_loss``); ``eval_head`` (the student) is what
  validation renders. ``frozen_heads`` freezes the teacher when the recipe asks for it (KITTI-Raw).

``BTSModel(batch)`` is the training forward pass and returns a typed :class:`BTSOutput`; the loss is computed by
the caller (the train step), and nothing is stored on the module between calls. :meth:`BTSModel.render_view`
renders the pixels of one view (validation, evaluation, visualisation).

Precision: under an outer ``torch.autocast`` only the image encoder runs in reduced precision. Poses, rays,
projections and compositing run in float32 (autocast is switched off around them), because bf16 camera
geometry moves points by centimetres at 80 m.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from datasets.sample import Sample
from models.density_field import DensityField, EncodedScene
from models.encoder import draw_flip
from models.frame_roles import EncodingStyle, FrameRoles, FrameSampleMode, choose_encoder_ids, choose_frame_roles
from models.rays import ImageRaySampler, Patches, PatchRaySampler, RayBundle
from models.rendering import DensityField as DensityFieldFn
from models.rendering import ImageRender, RenderOutput, RenderViews, draw_jitter, render_image, render_rays
from utils.geometry import invert_pose


@dataclass(frozen=True)
class StepChoices:
    """Every random decision of one training forward pass.

    :meth:`BTSModel.draw_choices` draws them; :meth:`BTSModel.forward` takes them as given, so a step can be
    replayed exactly (e.g. an official training step with its recorded draws). View dropout inside the fusion
    heads is the one random choice not in here: it belongs to the head (``view_dropout``).
    """

    roles: FrameRoles  # encoder, render (colour) and loss views
    patches: Patches  # (B, P) patch positions on the loss views
    flip: bool  # horizontal flip of the encoder inputs (features flipped back)
    jitter: Tensor | None  # (B, R, S) stratified sample offsets in [0, 1); None: deterministic samples


@dataclass
class BTSOutput:
    """What one training forward pass produced for ``B`` scenes and ``R`` patch rays."""

    render: RenderOutput  # rgb (B, R, Vr, 3), depth (B, R), weights (B, R, S) ...
    target: Tensor  # (B, R, 3), loss-frame colours in [0, 1] at the rays' pixels
    rays: RayBundle  # (B, R), in the frame of view 0
    choices: StepChoices

    @property
    def roles(self) -> FrameRoles:
        return self.choices.roles


def relative_to_first_view(cam_to_world: Tensor) -> Tensor:
    """Poses (B, V, 4, 4) re-expressed in the frame of view 0: ``inv(cam_to_world[:, 0]) @ cam_to_world``."""
    return invert_pose(cam_to_world[:, :1]) @ cam_to_world


def _select(values: Tensor, ids: tuple[int, ...]) -> Tensor:
    """Views ``ids`` of a (B, V, ...) tensor."""
    return values[:, list(ids)]


def _geometry_precision(device: torch.device) -> torch.autocast:
    """Float32 for camera geometry even inside an autocast region."""
    return torch.autocast(device.type, enabled=False)


class BTSModel(nn.Module):
    """Density field + frame roles + patch ray sampling + volume rendering.

    ``field_chunk_size``: rays per density-field call in training (None: all at once; the values are the same,
    smaller working sets run faster on a CPU). ``eval_ray_chunk_size``: rays per chunk of :meth:`render_view`.
    ``density_head`` renders in training, ``eval_head`` (default: the same) in :meth:`render_view`; both must
    name heads of ``field``. ``encoding_style`` and ``num_multiviews`` choose the training encoder views
    (:func:`models.frame_roles.choose_encoder_ids`); ``eval_encoder_ids`` are the views :meth:`render_view`
    encodes. ``frozen_heads``: heads whose parameters get no gradient.
    """

    def __init__(
        self,
        field: DensityField,
        frame_sample_mode: FrameSampleMode = "kitti360-mono",
        ray_batch_size: int = 4096,
        patch_size: int = 8,
        z_near: float = 3.0,
        z_far: float = 80.0,
        samples_per_ray: int = 64,
        density_head: str = "single_view",
        flip_p: float = 0.5,
        eval_ray_chunk_size: int = 2048,
        field_chunk_size: int | None = None,
        eval_head: str | None = None,
        encoding_style: EncodingStyle = "mono",
        num_multiviews: int = 1,
        eval_encoder_ids: tuple[int, ...] | list[int] = (0,),
        frozen_heads: tuple[str, ...] | list[str] = (),
    ) -> None:
        super().__init__()
        if ray_batch_size % (patch_size * patch_size) != 0:
            raise ValueError(f"ray_batch_size {ray_batch_size} is not a multiple of patch_size^2 = {patch_size**2}")
        eval_head = density_head if eval_head is None else eval_head
        for key, name in (("density_head", density_head), ("eval_head", eval_head)):
            if name not in field.heads:
                raise ValueError(f"{key} {name!r} is not one of the field's heads {list(field.heads)}")
        for name in frozen_heads:
            if name not in field.heads:
                raise ValueError(f"frozen_heads: {name!r} is not one of the field's heads {list(field.heads)}")
            field.heads[name].requires_grad_(False)
        if encoding_style not in ("mono", "default", "random", "stereo"):
            raise ValueError(f"unknown encoding_style {encoding_style!r}; expected mono, default, random or stereo")
        if num_multiviews < 1 or (encoding_style == "mono" and num_multiviews != 1):
            raise ValueError(f"num_multiviews={num_multiviews} does not fit encoding_style={encoding_style!r}")
        eval_encoder_ids = tuple(int(i) for i in eval_encoder_ids)
        if not eval_encoder_ids or eval_encoder_ids[0] != 0:
            raise ValueError(f"eval_encoder_ids must start with view 0 (the input view), got {list(eval_encoder_ids)}")
        self.field = field
        self.frame_sample_mode: FrameSampleMode = frame_sample_mode
        self.ray_sampler = PatchRaySampler(ray_batch_size, patch_size, z_near, z_far)
        self.z_near = z_near
        self.z_far = z_far
        self.samples_per_ray = samples_per_ray
        self.density_head = density_head
        self.eval_head = eval_head
        self.flip_p = flip_p
        self.eval_ray_chunk_size = eval_ray_chunk_size
        self.field_chunk_size = field_chunk_size
        self.encoding_style: EncodingStyle = encoding_style
        self.num_multiviews = num_multiviews
        self.eval_encoder_ids = eval_encoder_ids
        self.frozen_heads = tuple(frozen_heads)

    def encode(self, images: Tensor, K_norm: Tensor, cam_to_world: Tensor, flip: bool = False) -> EncodedScene:
        """Encoder views (B, Ve, ...) -> scene, with the feature maps in float32 whatever the autocast dtype."""
        scene = self.field.encode(images, K_norm, cam_to_world, flip=flip)
        return replace(scene, features=scene.features.float())

    def draw_choices(self, batch: Sample, generator: torch.Generator | None = None) -> StepChoices:
        """Draw the random decisions of a training pass over ``batch``: encoder views, frame roles, flip (in
        training mode only), patch positions, sample jitter."""
        B, V, _, H, W = batch.images.shape
        encoder_ids = choose_encoder_ids(self.encoding_style, V, self.num_multiviews, generator)
        roles = choose_frame_roles(self.frame_sample_mode, V, encoder_ids, generator=generator)
        flip = self.training and draw_flip(self.flip_p, generator)
        device = batch.images.device
        patches = self.ray_sampler.draw(B, H, W, roles.loss_ids, generator, device)
        jitter = draw_jitter(B, self.ray_sampler.ray_batch_size, self.samples_per_ray, generator, device)
        return StepChoices(roles=roles, patches=patches, flip=flip, jitter=jitter)

    def forward(
        self, batch: Sample, choices: StepChoices | None = None, generator: torch.Generator | None = None
    ) -> BTSOutput:
        """Training pass: ``batch.images`` (B, V, 3, H, W) in [-1, 1] -> rendered patches on the loss frames.

        ``choices``: the step's random decisions (default: drawn with ``generator`` by :meth:`draw_choices`).
        """
        if choices is None:
            choices = self.draw_choices(batch, generator)
        roles = choices.roles
        with _geometry_precision(batch.images.device):
            cam_to_world = relative_to_first_view(batch.cam_to_world.float())  # (B, V, 4, 4)
        enc = roles.encoder_ids
        scene = self.encode(
            _select(batch.images, enc), _select(batch.K_norm, enc), _select(cam_to_world, enc), choices.flip
        )

        field = self.field.field_fn(scene, self.density_head, all_heads=True)  # the KD loss reads every head
        return self.render_patches(batch, choices, field, cam_to_world)

    def render_patches(
        self, batch: Sample, choices: StepChoices, field: DensityFieldFn, cam_to_world: Tensor | None = None
    ) -> BTSOutput:
        """Render the patch rays of ``choices`` with the density ``field`` (the model's, or any other: e.g. a
        world's exact occupancy, to see what the loss makes of it), colours from the render views.

        ``cam_to_world``: the batch's poses in the frame of view 0 (computed when not given)."""
        roles = choices.roles
        with _geometry_precision(batch.images.device):
            if cam_to_world is None:
                cam_to_world = relative_to_first_view(batch.cam_to_world.float())
            colors = batch.images.float() * 0.5 + 0.5  # (B, V, 3, H, W) in [0, 1]
            rays, target = self.ray_sampler(colors, batch.K_norm, cam_to_world, choices.patches)
            render_views = RenderViews(
                colors=_select(colors, roles.render_ids),
                K_norm=_select(batch.K_norm, roles.render_ids),
                world_to_cam=invert_pose(_select(cam_to_world, roles.render_ids)),
            )
            render = render_rays(
                rays,
                field,
                render_views,
                samples_per_ray=self.samples_per_ray,
                jitter=choices.jitter,
                field_chunk_size=self.field_chunk_size,
            )
        return BTSOutput(render=render, target=target, rays=rays, choices=choices)

    def encode_views(self, batch: Sample, encoder_ids: tuple[int, ...] | None = None) -> EncodedScene:
        """Encode the views ``encoder_ids`` (default ``eval_encoder_ids``) of a batch, posed in the frame of view 0."""
        encoder_ids = self.eval_encoder_ids if encoder_ids is None else tuple(encoder_ids)
        if max(encoder_ids) >= batch.num_views:
            raise ValueError(
                f"encoder views {list(encoder_ids)} asked for, but the batch has only {batch.num_views} views"
            )
        with _geometry_precision(batch.images.device):
            cam_to_world = relative_to_first_view(batch.cam_to_world.float())
        enc = tuple(encoder_ids)
        return self.encode(_select(batch.images, enc), _select(batch.K_norm, enc), _select(cam_to_world, enc))

    @torch.no_grad()
    def render_view(
        self,
        batch: Sample,
        view_id: int = 0,
        render_ids: tuple[int, ...] | None = None,
        encoder_ids: tuple[int, ...] | None = None,
        head: str | None = None,
        scene: EncodedScene | None = None,
        pixels: Tensor | None = None,
        ray_chunk_size: int | None = None,
    ) -> ImageRender:
        """Render the pixels of ``view_id`` (all, or the flat indices ``pixels``) with ``head`` (default
        ``eval_head``) from ``scene`` (default: :meth:`encode_views` of ``encoder_ids``); deterministic samples.

        Colours come from ``render_ids`` (default: every other view, or view 0 itself for one-view samples).
        ``ray_chunk_size`` defaults to ``eval_ray_chunk_size``.
        """
        B, V, _, H, W = batch.images.shape
        head = self.eval_head if head is None else head
        scene = self.encode_views(batch, encoder_ids) if scene is None else scene
        if render_ids is None:
            render_ids = tuple(i for i in range(V) if i != view_id) or (view_id,)
        with _geometry_precision(batch.images.device):
            cam_to_world = relative_to_first_view(batch.cam_to_world.float())
            render_views = RenderViews(
                colors=_select(batch.images.float(), render_ids) * 0.5 + 0.5,
                K_norm=_select(batch.K_norm, render_ids),
                world_to_cam=invert_pose(_select(cam_to_world, render_ids)),
            )
            return render_image(
                self.field.field_fn(scene, head),
                ImageRaySampler(H, W, self.z_near, self.z_far),
                batch.K_norm[:, view_id],
                cam_to_world[:, view_id],
                render_views,
                pixels=pixels,
                samples_per_ray=self.samples_per_ray,
                ray_chunk_size=self.eval_ray_chunk_size if ray_chunk_size is None else ray_chunk_size,
            )
