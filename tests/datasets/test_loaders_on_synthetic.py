"""End to end: the real-data loaders read the synthetic trees, and their geometry matches the world's.

The synthetic world knows the exact geometry, so these tests check the whole calibration chain of
each loader (calibration files -> K_norm, cam_to_world, lidar frames) against it: a lidar point
projected with the loader's K and cam_to_world must land on a pixel whose analytic depth is the
point's depth, and the fisheye resampled to the virtual pinhole must look like a pinhole render of
the same camera.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.fisheye import fisheye_sampling_grid
from datasets.kitti_raw import KittiRawDataset
from datasets.synthetic import drives as D
from datasets.synthetic.render import colours_along
from datasets.synthetic.root import SyntheticRoot
from utils.geometry import (
    camera_rays,
    denormalize_intrinsics,
    invert_rigid,
    normalize_intrinsics,
    project,
    ray_grid,
    transform_points,
)


@pytest.fixture(scope="module")
def synthetic(synthetic_root) -> SyntheticRoot:
    return SyntheticRoot.load(synthetic_root)


@pytest.fixture(scope="module")
def kitti360(synthetic_root) -> Kitti360Dataset:
    root = synthetic_root / "KITTI-360"
    return Kitti360Dataset(data_path=root, split_path=root / "splits" / "train_files.txt", image_size=(96, 320))


@pytest.fixture(scope="module")
def kitti_raw(synthetic_root) -> KittiRawDataset:
    root = synthetic_root / "KITTI-Raw"
    return KittiRawDataset(
        data_path=root,
        pose_path=root / "orb-slam_poses",
        split_path=root / "splits" / "synthetic" / "train_files.txt",
        return_depth=True,
    )


def _left_anchored(dataset, start: int):
    """First sample at or after ``start`` whose view 0 is the left camera (split files mix both)."""
    for index in range(start, len(dataset)):
        sample = dataset[index]
        if not sample.is_right:
            return sample
    raise AssertionError("no left-anchored sample in the split")


def _lidar_depth_agreement(world, points_cam, cam_to_world, K_norm, width, height):
    """Relative error between lidar z and the world's analytic depth at the projected pixel."""
    uv, z, invalid = project(points_cam, K_norm)
    keep = ~invalid & (z > 3.0) & (z < 60.0)
    pixels = (uv[keep] + 1.0) * torch.tensor([width, height], dtype=uv.dtype) / 2.0
    K_pixels = denormalize_intrinsics(K_norm, width, height)
    analytic = world.depth_pinhole(cam_to_world, K_pixels, pixels).to(torch.float64)
    return ((analytic - z[keep]).abs() / z[keep]).numpy()


def test_kitti360_lidar_lands_on_its_analytic_depth(kitti360, synthetic):
    sample = _left_anchored(kitti360, 5)
    width, height = synthetic.kitti360_rig.width, synthetic.kitti360_rig.height
    scan = kitti360.load_lidar(sample.sequence, sample.frame_id, frame="cam0")
    points = torch.from_numpy(scan[:, :3]).to(torch.float64)
    error = _lidar_depth_agreement(
        synthetic.world,
        points,
        sample.cam_to_world[0].to(torch.float64),
        sample.K_norm[0].to(torch.float64),
        width,
        height,
    )
    assert len(error) > 500
    # Most points are seen by the camera (the rest are occluded from its slightly different viewpoint);
    # where they are, the depth agrees to float32 precision, far below the 1 % the issue asks for.
    assert np.mean(error < 0.01) > 0.9
    assert np.median(error) < 1e-4


def test_kitti360_poses_and_intrinsics_are_sub_pixel_exact(kitti360, synthetic):
    sample = _left_anchored(kitti360, 5)
    spec = synthetic.drive(sample.sequence)
    rig = synthetic.kitti360_rig
    true_cam_to_world = torch.from_numpy(D.kitti360_camera_to_world(synthetic.world, spec, rig, 0)[sample.frame_id])
    loader_cam_to_world = sample.cam_to_world[0].to(torch.float64)
    true_K = normalize_intrinsics(torch.from_numpy(rig.K), rig.width, rig.height)
    assert torch.allclose(sample.K_norm[0].to(torch.float64), true_K, atol=1e-6)
    # Project world points 5-50 m ahead with both cameras: the pixels must agree to well under a pixel.
    generator = torch.Generator().manual_seed(0)
    local = torch.rand(2000, 3, generator=generator, dtype=torch.float64) * torch.tensor([20.0, 6.0, 45.0])
    local = local + torch.tensor([-10.0, -3.0, 5.0], dtype=torch.float64)
    world_points = transform_points(true_cam_to_world, local)
    uv_true, _, _ = project(transform_points(invert_rigid(true_cam_to_world), world_points), true_K)
    uv_loader, _, _ = project(transform_points(invert_rigid(loader_cam_to_world), world_points), true_K)
    pixel_error = ((uv_loader - uv_true) * torch.tensor([rig.width, rig.height]) / 2.0).abs().max().item()
    assert pixel_error < 0.01


def test_kitti_raw_lidar_lands_on_its_analytic_depth(kitti_raw, synthetic):
    sample = _left_anchored(kitti_raw, 3)
    date, drive = sample.sequence.split("/")
    calibration = kitti_raw.calibration(date)
    spec = synthetic.drive(drive)
    rig = synthetic.kitti_raw_rig
    scan = np.fromfile(
        kitti_raw.data_path / date / drive / "velodyne_points" / "data" / f"{sample.frame_id:010d}.bin", np.float32
    ).reshape(-1, 4)
    # Velodyne -> image 2 with the loader's calibration (P_rect_02 @ R_rect_00 @ T_velo_to_cam).
    P = torch.from_numpy(calibration.velo_to_image(False))
    homogeneous = torch.cat([torch.from_numpy(scan[:, :3]).double(), torch.ones(len(scan), 1, dtype=torch.float64)], 1)
    projected = homogeneous @ P.T
    z = projected[:, 2]
    front = z > 3.0
    pixels = projected[front, :2] / z[front, None]
    width, height = rig.width, rig.height
    inside = (pixels[:, 0] > 0) & (pixels[:, 0] < width - 1) & (pixels[:, 1] > 0) & (pixels[:, 1] < height - 1)
    pixels, z = pixels[inside], z[front][inside]
    # The loader's poses are relative to the drive's first frame: bring them into the world frame.
    first = torch.from_numpy(D.kitti_raw_rect0_to_world(synthetic.world, spec, rig)[0])
    cam_to_world = first @ sample.cam_to_world[0].to(torch.float64)
    K_pixels = denormalize_intrinsics(sample.K_norm[0].to(torch.float64), width, height)
    analytic = synthetic.world.depth_pinhole(cam_to_world, K_pixels, pixels).to(torch.float64)
    error = ((analytic - z).abs() / z).numpy()
    assert len(error) > 500
    assert np.mean(error < 0.01) > 0.9
    assert np.median(error) < 1e-3

    # The depth ground truth puts each such point at the devkit pixel (round - 1) with its depth.
    depth = sample.depth[0].numpy()
    cols = np.round(pixels[:, 0].numpy()).astype(int) - 1
    rows = np.round(pixels[:, 1].numpy()).astype(int) - 1
    stored = depth[rows, cols]
    measured = stored > 0  # outside the Garg crop the map is empty
    assert measured.sum() > 100
    assert np.all(stored[measured] <= z.numpy()[measured] + 1e-3)  # nearest point wins on shared pixels
    assert np.median(np.abs(stored[measured] - z.numpy()[measured])) < 1e-4


def _fisheye_dataset(synthetic_root, model: str) -> Kitti360Dataset:
    root = synthetic_root / "KITTI-360"
    return Kitti360Dataset(
        data_path=root,
        split_path=root / "splits" / "train_files.txt",
        image_size=(96, 320),
        return_stereo=False,
        fisheye_model=model,
        preprocessed=False,
    )


def test_exact_fisheye_grid_samples_where_the_true_fisheye_sees_each_ray(synthetic_root, synthetic):
    """Geometry of the resampling: target pixel -> world ray (loader) -> true fisheye pixel == the grid's pixel."""
    dataset = _fisheye_dataset(synthetic_root, "exact")
    sample = dataset[4]
    camera_name = "03" if sample.is_right else "02"
    fisheye_index = int(camera_name) - 2
    rig = synthetic.kitti360_rig
    fisheye = rig.fisheyes[fisheye_index]
    frame = int(sample.extras["view_frame_ids"][2])
    true_fisheye_to_world = torch.from_numpy(
        D.kitti360_camera_to_world(synthetic.world, synthetic.drive(sample.sequence), rig, 2 + fisheye_index)[frame]
    )
    rays = camera_rays(ray_grid(96, 320, dtype=torch.float64), sample.K_norm[2].to(torch.float64)).reshape(-1, 3)
    world_dirs = rays @ sample.cam_to_world[2].to(torch.float64)[:3, :3].T
    fisheye_dirs = world_dirs @ true_fisheye_to_world[:3, :3]  # world -> true fisheye frame
    expected, _ = fisheye.project(fisheye_dirs / fisheye_dirs.norm(dim=-1, keepdim=True), tangential=True)
    grid = fisheye_sampling_grid(
        dataset.calibration.K_norm,
        (96, 320),
        dataset.calibration.fisheye[camera_name],
        dataset.calibration.fisheye_rotation[camera_name],
        "exact",
    )[0].to(torch.float64)
    size = torch.tensor([fisheye.width - 1, fisheye.height - 1], dtype=torch.float64)
    sampled = ((grid + 1.0) * size / 2.0).reshape(-1, 2)  # align_corners=True: -1/+1 are the outer pixel centres
    assert (sampled - expected).abs().max().item() < 1e-3  # fisheye pixels


@pytest.mark.parametrize("model, min_psnr", [("exact", 30.0), ("official", 27.0)])
def test_fisheye_resampling_matches_a_direct_pinhole_render(synthetic_root, synthetic, model, min_psnr):
    """Photometry: the resampled fisheye looks like a pinhole render of the same virtual camera.

    The procedural textures carry detail finer than a 96 x 320 pixel; the direct render point-samples
    (aliases) it while the resampled view interpolates fisheye pixels. A 1-pixel Gaussian on both
    compares the band both images can represent; a half-pixel misregistration still costs ~1 dB.
    """
    dataset = _fisheye_dataset(synthetic_root, model)
    sample = dataset[4]
    height, width = 96, 320
    psnrs = []
    for view in (2, 3):  # f(t+10), f(t+11) without stereo
        cam_to_world = sample.cam_to_world[view].to(torch.float64)
        rays = camera_rays(ray_grid(height, width, dtype=torch.float64), sample.K_norm[view].to(torch.float64))
        dirs = rays.reshape(-1, 3) @ cam_to_world[:3, :3].T
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        direct = colours_along(synthetic.world, cam_to_world[:3, 3].expand_as(dirs), dirs)
        direct = cv2.GaussianBlur(direct.reshape(height, width, 3).numpy(), (0, 0), 1.0)
        resampled = ((sample.images[view].permute(1, 2, 0) + 1.0) / 2.0).numpy()
        resampled = cv2.GaussianBlur(resampled, (0, 0), 1.0)
        border = 8  # bilinear sampling and the lens rim make the outermost pixels differ
        diff = (resampled - direct)[border:-border, border:-border]
        psnrs.append(-10.0 * math.log10(float((diff**2).mean())))
    assert min(psnrs) > min_psnr, psnrs
