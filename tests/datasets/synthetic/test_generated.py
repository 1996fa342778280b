"""The generated tree: layout, calibration parsing and consistency, determinism, sensors vs ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from datasets.calibration import expect_matrix, read_key_values, read_matrix_rows
from datasets.io import read_rgb, read_velodyne
from datasets.synthetic import drives as D
from datasets.synthetic import render as R
from datasets.synthetic.frames import FrameRenderer, frame_paths, lens_mask
from datasets.synthetic.generate import END_MARGIN, FIRST_POSED_FRAME
from datasets.synthetic.rigs import homogeneous
from datasets.synthetic.root import SyntheticRoot


@pytest.fixture(scope="module")
def synthetic(synthetic_root) -> SyntheticRoot:
    return SyntheticRoot.load(synthetic_root)


def _rigid(values: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3] = values.reshape(3, 4)
    return T


def test_every_file_exists(synthetic):
    for dataset, specs in (("kitti_360", synthetic.kitti360), ("kitti_raw", synthetic.kitti_raw)):
        for index, spec in enumerate(specs):
            for frame in range(spec.num_frames):
                for path in frame_paths(synthetic, dataset, index, frame).values():
                    assert path.is_file(), path
    root = synthetic.root
    for name in ("train", "val", "test"):
        assert (root / "KITTI-360" / "splits" / f"{name}_files.txt").is_file()
        assert (root / "KITTI-Raw" / "splits" / "synthetic" / f"{name}_files.txt").is_file()
    assert not list(root.rglob("*.tmp"))


def test_kitti360_calibration_parses_and_is_consistent(synthetic):
    calib = synthetic.root / "KITTI-360" / "calibration"
    rig = synthetic.kitti360_rig
    to_pose = read_key_values(calib / "calib_cam_to_pose.txt")
    assert sorted(to_pose) == ["image_00", "image_01", "image_02", "image_03"]
    perspective = read_key_values(calib / "perspective.txt")
    assert perspective["S_rect_00"].tolist() == [rig.width, rig.height]
    for cam in (0, 1):
        R_rect = expect_matrix(perspective, f"R_rect_{cam:02d}", (3, 3), calib)
        rect_to_pose = _rigid(to_pose[f"image_{cam:02d}"]) @ np.linalg.inv(homogeneous(R_rect))  # loader rule
        np.testing.assert_allclose(rect_to_pose, rig.rect_to_pose[cam], atol=1e-8)
    P01 = expect_matrix(perspective, "P_rect_01", (3, 4), calib)
    assert -P01[0, 3] / P01[0, 0] == pytest.approx(0.5947)
    assert len((calib / "calib_cam_to_velo.txt").read_text().split()) == 12
    for name in ("image_02", "image_03"):
        lines = (calib / f"{name}.yaml").read_text().splitlines()
        assert lines[0] == "%YAML:1.0"
        values = yaml.safe_load("\n".join(lines[1:]))
        assert values["model_type"] == "MEI" and values["image_width"] == rig.fisheyes[0].width
        assert set(values["distortion_parameters"]) == {"k1", "k2", "p1", "p2"}


def test_kitti360_poses_and_splits(synthetic):
    spec = synthetic.kitti360[0]
    ids, rows = read_matrix_rows(synthetic.root / "KITTI-360" / "data_poses" / spec.name / "poses.txt", 12, "", True)
    assert ids.tolist() == list(range(FIRST_POSED_FRAME, spec.num_frames))
    steps = np.linalg.norm(np.diff(rows[:, [3, 7, 11]], axis=0), axis=1)
    assert (steps > 0.8).all() and (steps < 1.0).all()
    splits = {}
    for name in ("train", "val", "test"):
        lines = (synthetic.root / "KITTI-360" / "splits" / f"{name}_files.txt").read_text().split("\n")
        splits[name] = [line.split() for line in lines if line]
        assert splits[name], name
        for seq, frame, side in splits[name]:
            assert seq == spec.name and len(frame) == 10 and side in "lr"
            assert FIRST_POSED_FRAME <= int(frame) < spec.num_frames - END_MARGIN
    assert {side for *_, side in splits["train"]} == {"l", "r"}
    held_out = {int(f) for _, f, _ in splits["val"] + splits["test"]}
    assert not held_out & {int(f) for _, f, _ in splits["train"]}


def test_kitti_raw_calibration_and_poses(synthetic):
    date_dir = synthetic.root / "KITTI-Raw" / "2011_09_26"
    cam = read_key_values(date_dir / "calib_cam_to_cam.txt")
    for key in ("S_02", "K_02", "D_02", "R_02", "T_02", "S_rect_02", "R_rect_02", "P_rect_02", "P_rect_03"):
        assert key in cam, key
    assert cam["corner_dist"].tolist() == [0.0995]
    P2 = cam["P_rect_02"].reshape(3, 4)
    assert P2[0, 3] / P2[0, 0] == pytest.approx(44.85728 / 721.5377)
    velo = read_key_values(date_dir / "calib_velo_to_cam.txt")
    assert velo["R"].size == 9 and velo["T"].size == 3
    spec = synthetic.kitti_raw[0]
    _, poses = read_matrix_rows(synthetic.root / "KITTI-Raw" / "orb-slam_poses" / "2011_09_26" / f"{spec.name}.txt", 12)
    assert len(poses) == spec.num_frames
    np.testing.assert_allclose(poses[0], np.eye(4)[:3].ravel(), atol=1e-12)
    assert poses[1, 11] == pytest.approx(0.9, abs=0.1)  # moves forward along rect-cam0 z


def test_rendering_is_deterministic(synthetic):
    first = FrameRenderer(synthetic).render_images("kitti_360", 0, 5)
    second = FrameRenderer(SyntheticRoot.load(synthetic.root)).render_images("kitti_360", 0, 5)
    for key in first:
        assert np.array_equal(first[key], second[key]), key
    on_disk = frame_paths(synthetic, "kitti_360", 0, 5)
    assert np.array_equal(read_rgb(on_disk["image_00"]), first["image_00"])
    assert np.array_equal(read_velodyne(on_disk["velodyne"]), first["velodyne"])


def _lidar_world(synthetic, dataset: str, frame: int):
    path = frame_paths(synthetic, dataset, 0, frame)["velodyne"]
    points = read_velodyne(path).astype(np.float64)
    renderer = FrameRenderer(synthetic)
    velo_to_world = renderer._camera_poses(dataset, 0, 4)[frame]
    return points, velo_to_world


def test_lidar_points_lie_on_surfaces(synthetic):
    points, velo_to_world = _lidar_world(synthetic, "kitti_360", 10)
    assert points.shape[1] == 4 and len(points) > 10000
    assert (points[:, 3] > 0).all() and (points[:, 3] < 1).all()
    dirs = points[:, :3] / np.linalg.norm(points[:, :3], axis=1, keepdims=True)
    world_points = points[:, :3] @ velo_to_world[:3, :3].T + velo_to_world[:3, 3]
    world_dirs = dirs @ velo_to_world[:3, :3].T
    occupied = synthetic.world.occupied
    assert not occupied(torch.from_numpy(world_points - 5e-3 * world_dirs)).any()
    assert occupied(torch.from_numpy(world_points + 5e-3 * world_dirs)).float().mean() > 0.995


def test_kitti360_lidar_projects_onto_rendered_depth(synthetic):
    """Loader convention (REFERENCE 6.1): T_velo->rect00 = R_rect_00 inv(T_00->velo), projected with P_rect_00."""
    calib = synthetic.root / "KITTI-360" / "calibration"
    cam_to_velo = _rigid(np.loadtxt(calib / "calib_cam_to_velo.txt"))
    perspective = read_key_values(calib / "perspective.txt")
    R_rect = homogeneous(perspective["R_rect_00"].reshape(3, 3))
    P = perspective["P_rect_00"].reshape(3, 4)
    points, _ = _lidar_world(synthetic, "kitti_360", 10)
    rect = (
        points[:, :3] @ (R_rect @ np.linalg.inv(cam_to_velo))[:3, :3].T + (R_rect @ np.linalg.inv(cam_to_velo))[:3, 3]
    )
    _check_projection(
        synthetic,
        rect,
        P,
        D.kitti360_camera_to_world(synthetic.world, synthetic.kitti360[0], synthetic.kitti360_rig, 0)[10],
        synthetic.kitti360_rig.width,
        synthetic.kitti360_rig.height,
    )


def test_kitti_raw_lidar_projects_onto_rendered_depth(synthetic):
    """Loader convention: P_velo->image2 = P_rect_02 R_rect_00 [R|T]_velo->cam0."""
    date_dir = synthetic.root / "KITTI-Raw" / "2011_09_26"
    cam = read_key_values(date_dir / "calib_cam_to_cam.txt")
    velo = read_key_values(date_dir / "calib_velo_to_cam.txt")
    velo_to_cam0 = np.eye(4)
    velo_to_cam0[:3, :3], velo_to_cam0[:3, 3] = velo["R"].reshape(3, 3), velo["T"]
    to_rect0 = homogeneous(cam["R_rect_00"].reshape(3, 3)) @ velo_to_cam0
    points, _ = _lidar_world(synthetic, "kitti_raw", 3)
    rect = points[:, :3] @ to_rect0[:3, :3].T + to_rect0[:3, 3]
    rig, spec = synthetic.kitti_raw_rig, synthetic.kitti_raw[0]
    cam2_to_world = D.kitti_raw_camera_to_world(synthetic.world, spec, rig, 2)[3]
    _check_projection(synthetic, rect, cam["P_rect_02"].reshape(3, 4), cam2_to_world, rig.width, rig.height)


def _check_projection(synthetic, rect_points, P, cam_to_world, width, height):
    """Points in rect-cam0 coordinates projected with P land where the rendered camera sees them, at that depth."""
    q = rect_points @ P[:, :3].T + P[:, 3]
    z = q[:, 2]
    uv = q[:, :2] / z[:, None]
    keep = (z > 1) & (z < 40) & (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
    assert keep.sum() > 500
    depth = synthetic.world.depth_pinhole(
        torch.from_numpy(cam_to_world), torch.from_numpy(P[:, :3]), torch.from_numpy(uv[keep])
    )
    agree = np.abs(depth.numpy() - z[keep]) < 0.02 * z[keep]
    assert agree.mean() > 0.85  # the rest are seen by the lidar but occluded for the camera


def test_fisheye_black_outside_lens(synthetic):
    camera = synthetic.kitti360_rig.fisheyes[0]
    image = read_rgb(frame_paths(synthetic, "kitti_360", 0, 3)["image_02"])
    v, u = torch.meshgrid(torch.arange(0.0, camera.height, 5), torch.arange(0.0, camera.width, 5), indexing="ij")
    _, valid = camera.unproject(torch.stack([u, v], -1).to(torch.float64))
    mask = lens_mask(camera)[::5, ::5]
    assert (mask == valid.numpy()).mean() > 0.995
    sampled = image[::5, ::5]
    outside = ~valid.numpy()
    assert outside.any() and (sampled[outside] == 0).all()
    assert (sampled[valid.numpy()].sum(-1) > 0).mean() > 0.99


def test_textures_are_view_consistent(synthetic):
    """A surface point seen in frame t (image_00) has the same colour when viewed from frame t + 2."""
    rig, spec = synthetic.kitti360_rig, synthetic.kitti360[0]
    poses = D.kitti360_camera_to_world(synthetic.world, spec, rig, 0)
    image = read_rgb(frame_paths(synthetic, "kitti_360", 0, 6)["image_00"]).astype(np.float64) / 255.0
    rays = R.pinhole_rays(rig.K, rig.width, rig.height)
    result = R.trace(synthetic.world, rays, poses[6], 150.0)
    distance = R.to_image(rays, result.distance[..., None], fill=float("inf"))[..., 0].numpy()
    dirs_world = R.to_image(rays, result.dirs_world.permute(1, 2, 0)).numpy()
    v, u = np.nonzero(distance < 25.0)
    pick = np.random.default_rng(0).choice(len(v), 300, replace=False)
    v, u = v[pick], u[pick]
    points = poses[6][:3, 3] + dirs_world[v, u] * distance[v, u, None]
    origin = poses[8][:3, 3]
    dirs = points - origin
    length = np.linalg.norm(dirs, axis=1)
    seen = synthetic.world.cast(
        torch.from_numpy(np.broadcast_to(origin, dirs.shape).copy()), torch.from_numpy(dirs / length[:, None])
    )
    visible = np.abs(seen.distance.numpy() - length) < 1e-3
    assert visible.mean() > 0.7
    colours = R.colours_along(
        synthetic.world,
        torch.from_numpy(np.broadcast_to(origin, dirs.shape).copy()),
        torch.from_numpy(dirs / length[:, None]),
    )
    difference = np.abs(colours.numpy()[visible] - image[v, u][visible])
    assert difference.max() < 3 / 255
