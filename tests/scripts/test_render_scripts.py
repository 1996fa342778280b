"""The render scripts end to end on the synthetic world with a tiny model, and the pieces they share.

Every script runs in-process through its ``main(argv)`` with ResNet-18 at 64 x 96, 4 samples per ray and small
profile grids; outputs are checked for existence and size (PNG dimensions, MP4 frames read back with OpenCV).
The bird's-eye profile of an oracle field (the synthetic world's exact occupancy) is compared with the analytic
bird's-eye occupancy, and the PLY export with a hand-made density whose point count is known.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datasets.kitti_360 import Kitti360Dataset
from datasets.synthetic import SyntheticRoot
from models.field_output import FieldOutput
from scripts import export_ply
from scripts.common import (
    PRESETS,
    Camera,
    InputError,
    InputView,
    choose_checkpoint,
    compose_config,
    render_field,
)
from scripts.images import gen_img_custom, gen_imgs
from scripts.videos import gen_vid_nvs, gen_vid_seq_kdbts, gen_vid_transition
from scripts.videos.cameras import load_trajectory, transition_cameras
from utils.geometry import make_rigid, project, rotation_y
from utils.occupancy.grid import render_profile, transform
from utils.ply import write_ply

H, W = 64, 96
TINY = ["--allow-random-weights", "--set", "model.samples_per_ray=4", "--image-size", str(H), str(W)]
TINY += ["--device", "cpu", "-m", "synthetic"]
PROFILE = ["--profile-res", "16", "12", "4"]  # X, Z, Y
COLOR = (200, 100, 50)  # RGB of the constant test image


def png_size(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image.shape[:2]


def video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Number of frames and (H, W) of a video, decoded with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, frame.shape[:2]
    capture.release()
    return count, size


def read_ply(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """A minimal PLY reader (one vertex element of float/uchar properties): columns by name and the header count."""
    with open(path, "rb") as f:
        assert f.readline() == b"ply\n"
        fmt = f.readline().split()[1].decode()
        names, types, count = [], [], None
        while (line := f.readline().decode().split()) != ["end_header"]:
            if line[0] == "element":
                assert line[1] == "vertex"
                count = int(line[2])
            elif line[0] == "property":
                types.append({"float": "<f4", "uchar": "u1"}[line[1]])
                names.append(line[2])
        dtype = np.dtype(list(zip(names, types, strict=True)))
        if fmt == "binary_little_endian":
            table = np.frombuffer(f.read(), dtype=dtype)
        else:
            assert fmt == "ascii"
            rows = np.loadtxt(f, ndmin=2)
            table = np.empty(len(rows), dtype=dtype)
            for i, name in enumerate(names):
                table[name] = rows[:, i]
    return {name: table[name] for name in names}, count


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    """A constant-colour image of an arbitrary size (the scripts resize it)."""
    path = tmp_path_factory.mktemp("input") / "street.png"
    cv2.imwrite(str(path), np.full((50, 160, 3), COLOR[::-1], dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def kdbts_checkpoint(tmp_path_factory) -> Path:
    """One of our checkpoints of a tiny KDBTS model: weights plus the run config (whose image size is 64 x 96)."""
    overrides = ["model.field.encoder.resnet_layers=18", "model.field.encoder.pretrained=false"]
    cfg = compose_config("train_synthetic_KD", [*overrides, "model.samples_per_ray=4", f"data.image_size=[{H},{W}]"])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    path = tmp_path_factory.mktemp("checkpoint") / "training_checkpoint_1.pt"
    torch.save({"model": model.state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True)}, path)
    return path


# ------------------------------------------------------------------------------------------------ the scripts
def test_gen_img_custom_writes_input_depth_and_profile(image_file, tmp_path):
    written = gen_img_custom.main(["-i", str(image_file), "-k", "bts", *TINY, *PROFILE, "--out", str(tmp_path)])
    assert sorted(written) == ["depth", "in", "profile"]
    assert written["in"] == tmp_path / "street_in.png"
    assert png_size(written["in"]) == png_size(written["depth"]) == (H, W)
    assert png_size(written["profile"]) == (12, 16)  # (Z, X)


def test_gen_img_custom_loads_our_checkpoint_and_picks_the_head(image_file, kdbts_checkpoint, tmp_path):
    argv = ["-i", str(image_file), "-m", "synthetic", "-c", str(kdbts_checkpoint), "--device", "cpu", *PROFILE]
    written = gen_img_custom.main([*argv, "--head", "multi_view", "--out", str(tmp_path)])
    assert png_size(written["depth"]) == (H, W)  # the image size stored in the checkpoint's run config
    with pytest.raises(SystemExit, match="unknown head 'nope'") as error:
        gen_img_custom.main([*argv, "--head", "nope", "--out", str(tmp_path)])
    assert "'multi_view'" in str(error.value) and "'single_view'" in str(error.value)  # the heads it has


def test_clear_errors(image_file, tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(SystemExit, match=f"input image not found: {missing}"):
        gen_img_custom.main(["-i", str(missing), *TINY])
    with pytest.raises(SystemExit, match="checkpoint not found"):
        gen_img_custom.main(["-i", str(image_file), "-m", "synthetic", "-c", str(tmp_path / "none.pt")])
    preset = replace(PRESETS["synthetic"], checkpoints={"bts": str(tmp_path / "no_run")})
    with pytest.raises(InputError, match=r"--checkpoint.*--allow-random-weights"):
        choose_checkpoint(None, preset, "bts", allow_random_weights=False)


def test_gen_imgs_renders_dataset_samples(synthetic_root, tmp_path):
    data = str(synthetic_root / "KITTI-360")
    written = gen_imgs.main([*TINY, *PROFILE, "--data-path", data, "--indices", "0", "2", "--out", str(tmp_path)])
    assert len(written) == 6 and all(p.is_file() for p in written)
    assert written[0].name.startswith("2013_05_28_drive_9000_sync_")
    assert [png_size(p) for p in written[:3]] == [(H, W), (H, W), (12, 16)]


def test_gen_vid_seq_writes_input_depth_profile_frames(synthetic_root, tmp_path):
    argv = [*TINY, "--data-path", str(synthetic_root / "KITTI-360"), "--end", "6", "--stride", "2", "--profile"]
    out = gen_vid_seq_kdbts.main([*argv, *PROFILE, "--out", str(tmp_path / "seq.mp4"), "--frames-dir", str(tmp_path)])
    # input over depth (2H x W), the profile scaled to 2H rows on the right (16 x 12 -> 171 x 128), even width
    assert video_frames(out) == (3, (2 * H, W + 172))
    assert sorted(p.name for p in tmp_path.glob("frame_*.png")) == [f"frame_{i:05d}.png" for i in range(3)]


def test_gen_vid_nvs_follows_the_trajectory(image_file, kdbts_checkpoint, tmp_path):
    argv = ["-i", str(image_file), "-m", "synthetic", "-c", str(kdbts_checkpoint), "--device", "cpu"]
    out = gen_vid_nvs.main([*argv, "--stride", "50", "--out", str(tmp_path / "nvs.mp4")])
    assert video_frames(out) == (3, (2 * H, W))  # poses 0, 50, 100 of 101


def test_gen_vid_transition_frame_count(synthetic_root, tmp_path):
    argv = [*TINY, "--data-path", str(synthetic_root / "KITTI-360"), "--index", "0", "--frames", "3", "--hold", "1"]
    out = gen_vid_transition.main([*argv, "--out", str(tmp_path / "t.mp4"), "--frames-dir", str(tmp_path / "f")])
    assert video_frames(out) == (4, (2 * H, W))
    assert png_size(tmp_path / "f" / "frame_00000.png") == (2 * H, W)


def test_export_ply_keeps_the_seen_grid_points_with_the_input_colour(image_file, tmp_path):
    box = ["--x-range", "-4", "4", "--y-range", "-1", "1", "--z-range", "3", "9", "--spacing", "1"]
    argv = ["-i", str(image_file), *TINY, *box, "--threshold", "-1", "--out", str(tmp_path / "cloud.ply")]
    columns, count = read_ply(export_ply.main(argv))
    # Threshold -1 keeps every grid point the camera sees: count them with the preset's intrinsics.
    grid = export_ply.box_grid((-4, 4), (-1, 1), (3, 9), 1.0)  # 9 x 3 x 7 points
    _, _, invalid = project(grid.float(), PRESETS["synthetic"].intrinsics())
    assert count == len(columns["x"]) == int((~invalid).sum()) > 0
    assert np.all(columns["z"] >= 3) and np.all(columns["z"] <= 9)
    colors = np.stack([columns["red"], columns["green"], columns["blue"]], axis=1)
    assert np.all(np.abs(colors.astype(int) - np.array(COLOR)) <= 1)


# ------------------------------------------------------------------------------------------- shared pieces
@pytest.mark.parametrize("preset", ["synthetic", "KITTI-360"])
def test_profile_of_the_oracle_field_is_the_analytic_bird_eye_occupancy(synthetic_root, preset):
    root = SyntheticRoot.load(synthetic_root)
    dataset = Kitti360Dataset(synthetic_root / "KITTI-360", return_stereo=False, return_fisheye=False, frame_count=1)
    sample = dataset[10]
    cam_to_world = dataset.cam_to_world(sample.sequence, sample.frame_id, "00")  # (4, 4) float64
    level_to_cam = PRESETS[preset].level_to_cam()

    def oracle(points_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # opaque solids, seen everywhere
        occupied = root.world.occupied(transform(cam_to_world, points_cam.double()))
        return occupied.float() * 100.0, torch.zeros_like(occupied)

    X, Z, Y = 48, 40, 8
    profile = render_profile(oracle, level_to_cam, (X, Z, Y))  # (Z, X)

    # Analytic: the fraction of height slices (top, y = 0, downwards) above the first solid one in each column.
    x = -9.0 + 18.0 * torch.arange(X, dtype=torch.float64) / (X - 1)
    z = 21.0 - 18.0 * torch.arange(Z, dtype=torch.float64) / (Z - 1)  # far at the top row
    y = 0.75 * torch.arange(Y, dtype=torch.float64) / (Y - 1)
    points = torch.stack(torch.meshgrid(x, y, z, indexing="ij"), dim=-1)  # (X, Y, Z, 3)
    occupied = root.world.occupied(transform(cam_to_world @ level_to_cam, points.reshape(-1, 3))).reshape(X, Y, Z)
    free_above = torch.where(occupied.any(dim=1), occupied.int().argmax(dim=1), Y)  # (X, Z)
    expected = (free_above.T / Y).float()  # (Z, X)

    assert profile.shape == (Z, X)
    assert 0.05 < (expected < 1).float().mean() < 0.95  # the street has both free and occupied columns here
    assert (profile - expected).abs().max() < 1e-6


def test_a_novel_camera_renders_the_depth_of_the_oracle_field(synthetic_root):
    """The renderer of the NVS and transition videos, driven by the synthetic world's exact occupancy, gives the
    world's ray-cast depth for a camera moved and turned away from the input (checks the pose convention)."""
    root = SyntheticRoot.load(synthetic_root)
    dataset = Kitti360Dataset(synthetic_root / "KITTI-360", return_stereo=False, return_fisheye=False, frame_count=1)
    sample = dataset[10]
    input_to_world = dataset.cam_to_world(sample.sequence, sample.frame_id, "00")  # (4, 4) float64

    def oracle(samples) -> FieldOutput:  # samples.points (1, R, S, 3) in the input frame
        occupied = root.world.occupied(transform(input_to_world, samples.points.reshape(-1, 3).double()))
        return FieldOutput(sigma=occupied.float()[None] * 100.0, invalid=torch.zeros(1, len(occupied), 1, dtype=bool))

    Hc, Wc, S = 48, 64, 128
    K_norm = PRESETS["synthetic"].intrinsics()
    novel = make_rigid(rotation_y(math.radians(8.0)), torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64))
    camera = Camera(novel.float(), K_norm, (Hc, Wc), 3.0, 80.0)
    view = InputView(torch.zeros(3, Hc, Wc), K_norm, "oracle")
    render = render_field(oracle, view, camera, S, ray_chunk_size=1024, device=torch.device("cpu"))

    # Ray-grid convention: pixel column j is at u = -1 + 2 j / (W - 1), so fx_pix = fx' (W - 1) / 2, etc.
    K = torch.eye(3, dtype=torch.float64)
    K[0, 0], K[0, 2] = K_norm[0, 0] * (Wc - 1) / 2, (K_norm[0, 2] + 1) * (Wc - 1) / 2
    K[1, 1], K[1, 2] = K_norm[1, 1] * (Hc - 1) / 2, (K_norm[1, 2] + 1) * (Hc - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(Hc), torch.arange(Wc), indexing="ij")
    pixels = torch.stack([cols, rows], dim=-1).reshape(-1, 2)
    truth = root.world.depth_pinhole(input_to_world @ novel, K, pixels).reshape(Hc, Wc).float()

    hit = truth < 60.0
    assert hit.float().mean() > 0.5
    # Samples are uniform in inverse distance (step (1/3 - 1/80) / S) and a ray's z component is >= 0.6 here, so
    # the first sample inside a solid is this close in inverse z. About 3 % of the rays slip through thin solids
    # between two samples; with the inverse pose only about 2 % would agree.
    error = (1.0 / render.depth[hit] - 1.0 / truth[hit]).abs()
    assert (error <= (1 / 3.0 - 1 / 80.0) / S / 0.6 + 1e-4).float().mean() > 0.95


def test_ply_round_trip_binary_and_ascii(tmp_path):
    points = torch.tensor([[0.5, -1.25, 3.0], [2.0, 0.0, 7.5], [-3.0, 1.0, 20.0]])
    colors = torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0], [0.2, 0.4, 0.6]])
    for binary in (True, False):
        path = write_ply(tmp_path / f"{binary}.ply", points, colors, {"density": torch.tensor([1.0, 2.5, 9.0])}, binary)
        columns, count = read_ply(path)
        assert count == 3
        assert np.allclose(np.stack([columns[a] for a in "xyz"], 1), points.numpy())
        assert columns["red"].tolist() == [0, 255, 51] and columns["green"].tolist() == [128, 255, 102]
        assert np.allclose(columns["density"], [1.0, 2.5, 9.0])


def test_occupied_points_of_a_hand_made_density():
    grid = export_ply.box_grid((-1.0, 1.0), (-1.0, 1.0), (4.0, 6.0), 0.5)  # 5 x 5 x 5 points
    assert grid.shape == (125, 3)

    def slab(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, z = points.unbind(-1)
        inside = (x.abs() < 0.6) & ((y - 0.5).abs() < 0.1) & (z < 5.2)  # x in {-.5, 0, .5}, y = .5, z in {4, 4.5, 5}
        return inside.float() * 2.0, x > 0.25  # the camera does not see x = 0.5 (or 1)

    points, sigma = export_ply.occupied_points(slab, grid, torch.eye(4, dtype=torch.float64), threshold=1.0)
    assert len(points) == 6 and torch.all(sigma == 2.0)  # x in {-0.5, 0} times z in {4, 4.5, 5}
    assert sorted(points[:, 0].unique().tolist()) == [-0.5, 0.0]


def test_transition_cameras_end_top_down_and_square():
    spec = PRESETS["KITTI-360"].transition
    K_norm = PRESETS["KITTI-360"].intrinsics()
    cameras = transition_cameras(spec, K_norm, (192, 640), 3.0, 80.0, frames=30, hold=5)
    assert len(cameras) == 35
    first, last = cameras[0], cameras[-1]
    assert torch.equal(first.cam_to_world, torch.eye(4)) and first.size == (192, 640)
    assert (first.near, first.far) == (3.0, 80.0) and torch.allclose(first.K_norm, K_norm)
    assert all(torch.equal(c.cam_to_world, cameras[29].cam_to_world) for c in cameras[29:])
    t = math.radians(85.0)
    axis = last.cam_to_world[:3, 2]  # optical axis in the input frame: down (+y) and forward
    assert torch.allclose(axis, torch.tensor([0.0, math.sin(t), math.cos(t)]), atol=1e-6)
    assert torch.allclose(last.cam_to_world[:3, 3], torch.tensor([0.0, -6.0 * math.sin(t), 10.0 * (1 - math.cos(t))]))
    assert last.size == (192, 192) and (last.near, last.far) == (5.0, 7.0)
    # the central crop keeps the focal length in pixels: fx' W stays fx' W
    assert math.isclose(last.K_norm[0, 0].item() * 192, K_norm[0, 0].item() * 640, rel_tol=1e-6)
    progress = (10 / 29) ** 2
    assert math.isclose(cameras[10].far, 80.0 + (7.0 - 80.0) * progress)


def test_the_official_trajectory_every_second_pose_scaled():
    raw = torch.from_numpy(np.load(gen_vid_nvs.DEFAULT_TRAJECTORY)).float()
    poses = load_trajectory(gen_vid_nvs.DEFAULT_TRAJECTORY)  # x0.75, every 2nd
    assert poses.shape == (51, 4, 4)
    assert torch.allclose(poses[:, :3, 3], 0.75 * raw[::2, :3, 3])
    assert torch.equal(poses[:, :3, :3], raw[::2, :3, :3])
