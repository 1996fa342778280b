"""What the render scripts share: model loading, the input view, rendering a camera, the bird's-eye profile.

The scripts (``scripts/images``, ``scripts/videos``, ``scripts/export_ply.py``) are thin command lines over this
module, :mod:`scripts.videos.cameras` (camera paths) and :mod:`utils.media`::

    parser = argparse.ArgumentParser()
    add_model_args(parser)                            # --model/-m, --kind, --checkpoint, --head, --device, ...
    args = parser.parse_args(argv)
    image = read_image(args.img)                      # fails before the model loads
    loaded = model_from_args(args)                    # InferenceModel: model, head, image size, preset, device
    view = image_input(image, "name", loaded)         # InputView: colours, K_norm, name
    scene = encode_input(loaded, view)                # the encoded input view, posed at the identity
    render = render_camera(loaded, scene, view, input_camera(loaded, view))   # depth + colour of a camera
    profile = render_profile(model_density(loaded, scene), loaded.preset.level_to_cam(), res)

Frames: the input camera is the world (``cam_to_world`` = identity; x right, y down, z forward). A *preset*
(``KITTI-360``, ``KITTI-Raw``, ``synthetic``) names the dataset a model was trained on: its default normalised
intrinsics, whether its camera looks 5 degrees down (the levelled frame of REFERENCE 7.1), the training config
of each model kind and where ``download_checkpoint.sh`` (or training) puts the checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from hydra.errors import HydraException
from omegaconf import OmegaConf
from torch import Tensor

from datasets.calibration import DatasetError
from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.splits import SPLITS_DIR
from models.bts import BTSModel
from models.checkpoint import CheckpointError
from models.density_field import EncodedScene
from models.field_output import FieldOutput
from models.rays import ImageRaySampler
from models.rendering import RenderViews, render_image
from utils.checkpoints import load_model, resolve_checkpoint
from utils.config import compose_config
from utils.evaluation.common import choose_device
from utils.host_memory import reuse_freed_memory
from utils.occupancy.grid import PROFILE_RES, DensityFn, level_to_cam, render_profile
from utils.visualization import colorize, colorize_depth

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
MODEL_KINDS = ("bts", "mvbts", "kdbts")
INVALID_WEIGHT = 0.8  # official render_poses: a pixel is invalid when its invalid samples carry > 0.8 weight
DENSITY_CHUNK = 16384  # density queries per call (profiles, point clouds)
RenderField = Callable[[Tensor], FieldOutput]  # points (B, N, 3) -> FieldOutput, what the renderer calls


class InputError(Exception):
    """A mistake on the command line (missing file, unknown head, no checkpoint): shown without a traceback."""


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines of the scripts: level, logger, message."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def exit_on_input_error() -> Iterator[None]:
    """Turn the errors that mean "fix the command line or the files" (:class:`InputError`, a dataset file that is
    missing, a checkpoint that does not fit the model) into ``SystemExit("error: ...")``: the message, no
    traceback, exit status 1."""
    try:
        yield
    except (InputError, DatasetError, CheckpointError) as err:
        raise SystemExit(f"error: {err}") from err


# ----------------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Transition:
    """The input-to-top-down animation (REFERENCE 9.1): final pitch, camera offsets and depth range."""

    pitch_deg: float  # final downward pitch
    z_top: float  # forward offset factor: z = z_top (1 - cos t)
    y_top: float  # vertical offset factor: y = y_top sin t (negative = up, y points down)
    near_top: float  # near / far of the last frame
    far_top: float


@dataclass(frozen=True)
class Preset:
    """Everything that depends on the dataset a model was trained on."""

    name: str
    K_norm: tuple[float, float, float, float]  # fx, fy, cx, cy normalised to [-1, 1]
    inclined: bool  # the camera looks 5 degrees down: profiles and exports use the levelled frame
    configs: Mapping[str, str]  # model kind -> training config (configs/<name>.yaml)
    checkpoints: Mapping[str, str]  # model kind -> default checkpoint file or run directory
    transition: Transition
    data_path: str | None  # default root for dataset inputs (KITTI-360 format), None: always give --data-path
    image_split: str  # default split of gen_imgs
    video_split: str  # default split of the sequence video

    def intrinsics(self) -> Tensor:
        """(3, 3) normalised intrinsics."""
        fx, fy, cx, cy = self.K_norm
        return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def level_to_cam(self) -> Tensor:
        """(4, 4) float64 levelled frame -> input camera: the 5-degree inclination, or the identity."""
        return level_to_cam() if self.inclined else torch.eye(4, dtype=torch.float64)


KITTI_360_TRANSITION = Transition(pitch_deg=85.0, z_top=10.0, y_top=-6.0, near_top=5.0, far_top=7.0)
PRESETS: dict[str, Preset] = {
    "KITTI-360": Preset(
        name="KITTI-360",
        K_norm=(0.7849, 2.9391, -0.0312, 0.2701),
        inclined=True,
        configs={"bts": "train_kitti_360_bts", "mvbts": "train_kitti_360_base", "kdbts": "train_kitti_360_KD"},
        checkpoints={
            "bts": "out/kitti_360/pretrained/training-checkpoint.pt",
            "mvbts": "out/kitti_360/mvbts",
            "kdbts": "out/kitti_360/kdbts",
        },
        transition=KITTI_360_TRANSITION,
        data_path="data/KITTI-360",
        image_split="seg/test",
        video_split="val_seq/2013_05_28_drive_0000_sync",
    ),
    "KITTI-Raw": Preset(
        name="KITTI-Raw",
        K_norm=(1.1619, 3.8482, -0.0184, -0.0781),
        inclined=False,
        configs={"bts": "train_kitti_raw_bts", "mvbts": "train_kitti_raw_base", "kdbts": "train_kitti_raw_KD"},
        checkpoints={
            "bts": "out/kitti_raw/pretrained/training-checkpoint.pt",
            "mvbts": "out/kitti_raw/mvbts",
            "kdbts": "out/kitti_raw/kdbts",
        },
        transition=Transition(pitch_deg=90.0, z_top=14.0, y_top=-8.0, near_top=8.0, far_top=10.0),
        data_path=None,
        image_split="seg/test",
        video_split="val_seq/2013_05_28_drive_0000_sync",
    ),
    # The synthetic world's KITTI-360 rig has the KITTI-360 intrinsics but a level camera.
    "synthetic": Preset(
        name="synthetic",
        K_norm=(0.7849, 2.9391, -0.0312, 0.2701),
        inclined=False,
        configs={"bts": "train_synthetic_bts", "mvbts": "train_synthetic_base", "kdbts": "train_synthetic_KD"},
        checkpoints={kind: f"outputs/synthetic/{kind}" for kind in MODEL_KINDS},
        transition=KITTI_360_TRANSITION,
        data_path="data/synthetic/KITTI-360",
        image_split="test",
        video_split="all",
    ),
}


# ------------------------------------------------------------------------------------------------------- model
@dataclass
class InferenceModel:
    """A model ready to render: which head, at which image size, for which dataset preset, on which device."""

    model: BTSModel
    head: str
    image_size: tuple[int, int]  # (H, W) the input image is resized to
    preset: Preset
    device: torch.device
    antialias: bool = False  # the resizing of the dataset the model was trained on (data.antialias)


def choose_checkpoint(checkpoint: str | None, preset: Preset, kind: str, allow_random_weights: bool) -> Path | None:
    """The checkpoint to load: ``checkpoint`` if given; none with ``allow_random_weights``; else the preset's
    default location for ``kind`` if it exists. Anything else is an :class:`InputError` that says what to do."""
    if checkpoint is not None:
        try:
            return resolve_checkpoint(checkpoint)
        except FileNotFoundError as err:
            raise InputError(str(err)) from err
    if allow_random_weights:
        return None
    default = Path(preset.checkpoints[kind])
    if default.exists():
        log.info("no --checkpoint: using the default %s checkpoint of %s, %s", kind, preset.name, default)
        return resolve_checkpoint(default)
    raise InputError(
        f"no checkpoint: --checkpoint was not given and the default {kind} checkpoint of {preset.name} ({default}) "
        "does not exist. Pass --checkpoint <file or run directory> (ours or official; ./download_checkpoint.sh "
        "fetches the official ones), or --allow-random-weights to render an untrained model on purpose."
    )


def load_inference_model(
    preset_name: str,
    kind: str,
    checkpoint: str | None = None,
    allow_random_weights: bool = False,
    head: str | None = None,
    config_name: str | None = None,
    overrides: Sequence[str] = (),
    image_size: Sequence[int] | None = None,
    device: str = "auto",
) -> InferenceModel:
    """Build the model of ``config_name`` (default: the preset's training config of ``kind``) with Hydra
    ``overrides`` and load its weights through :func:`utils.checkpoints.load_model` (our checkpoints rebuild
    the model from their stored run config).

    ``head`` defaults to the model's ``eval_head``. The image size is ``image_size`` if given, else the
    ``data.image_size`` of the checkpoint's stored run config, else that of the composed config.
    """
    reuse_freed_memory()
    preset = PRESETS[preset_name]
    try:
        cfg = compose_config(config_name or preset.configs[kind], overrides)
    except HydraException as err:  # unknown config name, misspelt override key
        raise InputError(f"cannot compose the model config: {err}") from err
    path = choose_checkpoint(checkpoint, preset, kind, allow_random_weights)
    model_cfg = cfg.model
    if path is None:  # random weights: ImageNet weights would only be a download
        model_cfg = model_cfg.copy()
        OmegaConf.update(model_cfg, "field.encoder.pretrained", False)
    model, _, run_cfg, _ = load_model(model_cfg, path, allow_random_weights=path is None, use_checkpoint_config=True)
    if head is None:
        head = model.eval_head
    elif head not in model.field.heads:
        raise InputError(f"unknown head {head!r}; this model has the heads {list(model.field.heads)}")
    source = run_cfg if run_cfg is not None and OmegaConf.select(run_cfg, "data.image_size") else cfg
    if image_size is None:
        image_size = source.data.image_size
    antialias = bool(OmegaConf.select(source, "data.antialias", default=False))
    torch_device = choose_device(device)
    log.info("rendering head %r at %s on %s", head, list(image_size), torch_device)
    return InferenceModel(
        model.to(torch_device).eval(), head, (int(image_size[0]), int(image_size[1])), preset, torch_device, antialias
    )


def add_model_args(parser: argparse.ArgumentParser, default_kind: str = "kdbts") -> None:
    """The options of :func:`model_from_args`."""
    group = parser.add_argument_group("model")
    add = group.add_argument
    add(
        "--model",
        "-m",
        default="KITTI-360",
        choices=list(PRESETS),
        help="dataset the model was trained on: intrinsics of custom images, default config and checkpoint, "
        "levelled frame of the profile (default: %(default)s)",
    )
    add(
        "--kind",
        "-k",
        default=default_kind,
        choices=MODEL_KINDS,
        help="model kind: picks the default config and checkpoint (default: %(default)s)",
    )
    add(
        "--checkpoint",
        "-c",
        help="checkpoint file (ours or official) or run directory; default: where download_checkpoint.sh (or "
        "training, for -m synthetic) puts the --kind checkpoint of the preset",
    )
    add("--allow-random-weights", action="store_true", help="no checkpoint: render an untrained model on purpose")
    add("--head", help="density head that renders, e.g. single_view, multi_view (default: the model's eval_head)")
    add(
        "--config",
        help="training config that defines the model (default: the preset's config of --kind); our checkpoints "
        "rebuild the model from their stored run config instead",
    )
    add(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides of that config, e.g. model.samples_per_ray=32 data.image_size=[96,320]",
    )
    add(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input resolution (default: data.image_size of the checkpoint's run, else of the config)",
    )
    add("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...")


def model_from_args(args: argparse.Namespace) -> InferenceModel:
    """:func:`load_inference_model` with the options of :func:`add_model_args`."""
    return load_inference_model(
        preset_name=args.model,
        kind=args.kind,
        checkpoint=args.checkpoint,
        allow_random_weights=args.allow_random_weights,
        head=args.head,
        config_name=args.config,
        overrides=args.overrides,
        image_size=args.image_size,
        device=args.device,
    )


# ------------------------------------------------------------------------------------------------------- input
@dataclass
class InputView:
    """The single input view: colours, intrinsics and a name for the output files."""

    colors: Tensor  # (3, H, W), in [0, 1]
    K_norm: Tensor  # (3, 3), normalised to [-1, 1]
    name: str


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB (H0, W0, 3) uint8; read before the model loads, so a wrong path fails at once."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read the image {path} (not an image file OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_input(rgb: np.ndarray, name: str, loaded: InferenceModel) -> InputView:
    """A custom image (H0, W0, 3) uint8 resized to the model's size, with the preset's default intrinsics."""
    H, W = loaded.image_size
    resized = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
    colors = torch.from_numpy(resized).permute(2, 0, 1).float() / 255.0  # (3, H, W)
    return InputView(colors=colors, K_norm=loaded.preset.intrinsics(), name=name)


def resolve_split(data_path: Path, split: str) -> Path | None:
    """A split file from a path or a name: ``<data_path>/splits/<name>_files.txt`` (the synthetic world) or
    ``datasets/kitti_360/splits/<name>_files.txt`` (``seg/test``, ``val_seq/<sequence>``); ``all`` = None, every
    posed frame of every sequence."""
    if split == "all":
        return None
    candidates = [Path(split), data_path / "splits" / f"{split}_files.txt", SPLITS_DIR / f"{split}_files.txt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"split {split!r} not found; looked for {', '.join(str(c) for c in candidates)}")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """``--data-path`` and ``--split`` (see :func:`open_dataset`)."""
    group = parser.add_argument_group("dataset (KITTI-360 format: KITTI-360 or the synthetic world)")
    group.add_argument(
        "--data-path",
        help="dataset root (default: data/KITTI-360, or data/synthetic/KITTI-360 for -m synthetic)",
    )
    group.add_argument(
        "--split",
        help="split file or name: seg/test, val_seq/<sequence> (KITTI-360), test, val, train (the synthetic "
        "world), all (every posed frame of every sequence); default: the preset's",
    )


def open_dataset(data_path: str | None, split: str, loaded: InferenceModel) -> Kitti360Dataset:
    """The left perspective camera of a dataset in the KITTI-360 format, at the model's image size."""
    if data_path is None:
        if loaded.preset.data_path is None:
            raise InputError(f"give --data-path: dataset inputs read the KITTI-360 format, not {loaded.preset.name}")
        data_path = loaded.preset.data_path
    root = Path(data_path)
    if not root.is_dir():
        raise InputError(f"dataset not found: {root} (set --data-path)")
    return Kitti360Dataset(
        data_path=root,
        split_path=resolve_split(root, split),
        image_size=loaded.image_size,
        frame_count=1,
        return_stereo=False,
        return_fisheye=False,
        antialias=loaded.antialias,
    )


def dataset_input(dataset: Kitti360Dataset, index: int) -> InputView:
    """View 0 of dataset sample ``index``, named ``<sequence>_<frame>``."""
    if not 0 <= index < len(dataset):
        raise InputError(f"index {index} is outside the split (0 ... {len(dataset) - 1})")
    sample = dataset[index]
    colors = (sample.images[0] * 0.5 + 0.5).clamp(0.0, 1.0)  # images in [-1, 1] -> colours
    return InputView(colors=colors, K_norm=sample.K_norm[0], name=f"{sample.sequence}_{sample.frame_id:010d}")


def add_single_input_args(parser: argparse.ArgumentParser) -> None:
    """An image file (``--img``) or one dataset sample (``--index`` with ``--data-path`` / ``--split``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--img", "-i", help="input image (resized to the model size, preset intrinsics)")
    source.add_argument("--index", type=int, help="input: this sample of the dataset split")
    add_dataset_args(parser)


def model_and_single_input(args: argparse.Namespace) -> tuple[InferenceModel, InputView]:
    """The model (:func:`model_from_args`) and the input of :func:`add_single_input_args`; the image is read
    first, so a wrong path fails before any model is built."""
    image = read_image(args.img) if args.img is not None else None
    loaded = model_from_args(args)
    return loaded, single_input(args, loaded, image)


def add_video_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    """``--fps``, ``--out`` (the MP4 file, default ``default_out``) and ``--frames-dir``."""
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second (default: %(default)s)")
    parser.add_argument("--out", type=Path, help=f"MP4 file (default: {default_out})")
    parser.add_argument("--frames-dir", type=Path, help="also write every frame as a PNG into this folder")


def single_input(args: argparse.Namespace, loaded: InferenceModel, image: np.ndarray | None) -> InputView:
    """The input chosen by :func:`add_single_input_args`: ``image`` (``read_image(args.img)``) or the sample."""
    if image is not None:
        return image_input(image, Path(args.img).stem, loaded)
    dataset = open_dataset(args.data_path, args.split or loaded.preset.image_split, loaded)
    return dataset_input(dataset, args.index)


# --------------------------------------------------------------------------------------------------- rendering
@dataclass
class Camera:
    """A pinhole camera to render, posed in the frame of the input camera."""

    cam_to_world: Tensor  # (4, 4)
    K_norm: Tensor  # (3, 3)
    size: tuple[int, int]  # (H, W)
    near: float
    far: float


@dataclass
class CameraRender:
    """Every pixel of one camera."""

    depth: Tensor  # (H, W), camera z-depth in metres
    colors: Tensor  # (3, H, W) in [0, 1], sampled from the input view; 0 where not valid
    valid: Tensor  # (H, W) bool, the colour is backed by the input view (official 0.8 rule)


@torch.no_grad()
def encode_input(loaded: InferenceModel, view: InputView) -> EncodedScene:
    """Encode the input view alone (BTS, KDBTS and MVBTS in single-view mode), posed at the identity."""
    device = loaded.device
    images = (view.colors * 2.0 - 1.0)[None, None].to(device)  # (1, 1, 3, H, W) in [-1, 1]
    return loaded.model.encode(images, view.K_norm[None, None].to(device), torch.eye(4, device=device)[None, None])


def input_camera(loaded: InferenceModel, view: InputView) -> Camera:
    """The input camera itself, with the model's near and far."""
    size = (view.colors.shape[1], view.colors.shape[2])
    return Camera(torch.eye(4), view.K_norm, size, loaded.model.z_near, loaded.model.z_far)


def input_render_views(view: InputView, device: torch.device) -> RenderViews:
    """The input view as the renderer's only colour source (B = Vr = 1); it is the world frame."""
    return RenderViews(
        colors=view.colors[None, None].to(device),
        K_norm=view.K_norm[None, None].to(device),
        world_to_cam=torch.eye(4, device=device)[None, None],
    )


def render_camera(loaded: InferenceModel, scene: EncodedScene, view: InputView, camera: Camera) -> CameraRender:
    """Volume-render every pixel of ``camera`` through the head ``loaded.head`` of the encoded input."""
    model = loaded.model
    field = model.field.field_fn(scene, loaded.head)
    return render_field(field, view, camera, model.samples_per_ray, model.eval_ray_chunk_size, loaded.device)


@torch.no_grad()
def render_field(
    field: RenderField,
    view: InputView,
    camera: Camera,
    samples_per_ray: int,
    ray_chunk_size: int,
    device: torch.device,
) -> CameraRender:
    """Volume-render every pixel of ``camera`` through ``field`` (points (B, N, 3) in the input camera frame ->
    :class:`FieldOutput`) with :func:`models.rendering.render_image`, colours from the input view."""
    H, W = camera.size
    render = render_image(
        field,
        ImageRaySampler(H, W, camera.near, camera.far),
        camera.K_norm[None].float().to(device),
        camera.cam_to_world[None].float().to(device),
        input_render_views(view, device),
        samples_per_ray=samples_per_ray,
        ray_chunk_size=ray_chunk_size,
    )
    valid = render.invalid_weight[0, 0] <= INVALID_WEIGHT  # (H, W)
    colors = (render.rgb[0, 0] * valid).clamp(0.0, 1.0)  # (3, H, W)
    return CameraRender(depth=render.depth[0].cpu(), colors=colors.cpu(), valid=valid.cpu())


def model_density(loaded: InferenceModel, scene: EncodedScene) -> DensityFn:
    """The density of the encoded input through ``loaded.head``: points (N, 3) in the input camera frame ->
    sigma (N,), "no encoder view sees it" (N,)."""
    return loaded.model.field.density_fn(scene, loaded.head, DENSITY_CHUNK)


def add_picture_args(
    parser: argparse.ArgumentParser, depth_range: tuple[float, float] | None = None, profile: bool = True
) -> None:
    """``--depth-range`` and (with ``profile``) ``--profile-res`` (see :func:`input_pictures`)."""
    group = parser.add_argument_group("pictures")
    group.add_argument(
        "--depth-range",
        type=float,
        nargs=2,
        default=depth_range,
        metavar=("NEAR", "FAR"),
        help="depth (m) mapped to the ends of the magma colour map of inverse depth (default: "
        + ("%(default)s)" if depth_range is not None else "the model's near and far)"),
    )
    if not profile:
        return
    group.add_argument(
        "--profile-res",
        type=int,
        nargs=3,
        default=list(PROFILE_RES),
        metavar=("X", "Z", "Y"),
        help="bird's-eye profile grid: columns, rows, height slices (default: the official %(default)s)",
    )


def input_pictures(
    loaded: InferenceModel,
    view: InputView,
    profile_res: Sequence[int] | None = PROFILE_RES,
    depth_range: Sequence[float] | None = None,
) -> dict[str, Tensor]:
    """The pictures (3, ., .) of one input: ``in`` (the input colours), ``depth`` (inverse depth, magma, over
    ``depth_range``, default the model's near/far) and, unless ``profile_res`` is None, ``profile`` (the
    bird's-eye profile, occupied = bright, far at the top, in the preset's levelled frame)."""
    scene = encode_input(loaded, view)
    render = render_camera(loaded, scene, view, input_camera(loaded, view))
    depth = colorize_depth(render.depth, *(depth_range or (loaded.model.z_near, loaded.model.z_far)))
    pictures = {"in": view.colors, "depth": depth}
    if profile_res is not None:
        profile = render_profile(model_density(loaded, scene), loaded.preset.level_to_cam(), profile_res)
        pictures["profile"] = colorize(1.0 - profile, 0.0, 1.0)
    return pictures
