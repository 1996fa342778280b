"""Fisheye -> virtual pinhole resampling against the MEI model, on analytic images.

The fisheye image is a ramp that stores each pixel's own coordinates (bilinear interpolation of a
linear ramp is exact), so the resampled image says where in the fisheye each target pixel sampled.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.fisheye import antialias_factor, fisheye_sampling_grid, resample_fisheye
from datasets.mei import MeiCamera
from tests.datasets.kitti_360.world import FISH_SIZE, FISHEYE, P_RECT, PERSP_H, PERSP_W
from utils.geometry import fisheye_virtual_rotation, normalize_intrinsics

TARGET = (48, 160)
K_NORM = normalize_intrinsics(torch.from_numpy(P_RECT), PERSP_W, PERSP_H)


def camera(name: str) -> MeiCamera:
    return MeiCamera(**FISHEYE[name], width=FISH_SIZE, height=FISH_SIZE)


def coordinate_image(size: int) -> torch.Tensor:
    """(3, H, W): channel 0 = u / (W - 1), channel 1 = v / (H - 1) at pixel centre (u, v)."""
    v, u = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([u / (size - 1), v / (size - 1), torch.zeros_like(u)])


def points_in_view(count: int = 200, seed: int = 0) -> torch.Tensor:
    """Random points (N, 3) in the virtual camera frame that project inside the target view."""
    generator = np.random.default_rng(seed)
    uv = generator.uniform(-0.9, 0.9, size=(count, 2))
    rays = np.linalg.solve(K_NORM.numpy(), np.hstack([uv, np.ones((count, 1))]).T).T
    return torch.from_numpy(rays * generator.uniform(2.0, 50.0, size=(count, 1)))


def sampled_fisheye_pixels(resampled: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Read the resampled coordinate image where ``points`` project in the target view, (N, 2) pixels."""
    q = points @ K_NORM.T
    uv = (q[:, :2] / q[:, 2:]).view(1, 1, -1, 2)
    # The target grid is linspace(-1, 1): align_corners=True reads it at the right place.
    values = F.grid_sample(resampled.unsqueeze(0).double(), uv, align_corners=True)[0, :2, 0].T
    return values * (FISH_SIZE - 1)


@pytest.mark.parametrize(("name", "yaw", "pitch"), [("02", 0.0, -15.0), ("03", 0.0, -15.0), ("02", 20.0, -5.0)])
def test_exact_model_puts_a_point_where_mei_projects_it(name, yaw, pitch):
    cam = camera(name)
    R = fisheye_virtual_rotation(yaw if name == "02" else -yaw, pitch)
    grid = fisheye_sampling_grid(K_NORM, TARGET, cam, R, model="exact").double()
    resampled = F.grid_sample(coordinate_image(FISH_SIZE).unsqueeze(0), grid, align_corners=True)[0]
    points = points_in_view()
    truth, valid = cam.project(points @ R.T)  # virtual frame -> fisheye frame -> pixels
    assert valid.all()
    error = (sampled_fisheye_pixels(resampled, points) - truth).norm(dim=-1)
    assert error.max() < 0.1


def test_official_model_has_the_documented_quirk_and_stays_within_two_pixels():
    cam = camera("02")
    R = fisheye_virtual_rotation(0.0, -15.0)
    image = coordinate_image(FISH_SIZE).unsqueeze(0)
    points = points_in_view()
    pixels = {}
    for model in ("official", "exact"):
        grid = fisheye_sampling_grid(K_NORM, TARGET, cam, R, model=model).double()
        pixels[model] = sampled_fisheye_pixels(F.grid_sample(image, grid, align_corners=True)[0], points)
    difference = (pixels["official"] - pixels["exact"]).norm(dim=-1)
    assert difference.mean() > 0.05 and difference.max() < 2.0
    # Official = no tangential terms, and pixel u read at u (W - 1) / W.
    no_tangential, _ = cam.project(points @ R.T, tangential=False)
    assert (pixels["official"] - no_tangential * (FISH_SIZE - 1) / FISH_SIZE).abs().max() < 0.1


def test_resample_fisheye_keeps_uniform_colours_and_output_shape():
    grid = fisheye_sampling_grid(K_NORM, TARGET, camera("03"), fisheye_virtual_rotation(0.0, -15.0))
    assert grid.shape == (1, *TARGET, 2) and grid.dtype == torch.float32
    out = resample_fisheye(torch.full((3, FISH_SIZE, FISH_SIZE), 0.25), grid)
    assert out.shape == (3, *TARGET) and torch.allclose(out, torch.full_like(out, 0.25))


def test_loader_builds_each_camera_grid_once(world):
    ds = Kitti360Dataset(world, image_size=(24, 88), fisheye_model="exact")
    ds[0]
    grid, supersample = ds._reader.fisheye_grid("02")
    ds[1]
    assert ds._reader.fisheye_grid("02")[0] is grid and set(ds._reader._grids) == {"02", "03"}
    assert supersample == 1  # one sample per pixel unless antialias is asked for


def checkerboard(size: int) -> torch.Tensor:
    """(3, size, size): black and white alternating every pixel, the highest frequency an image holds."""
    v, u = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((u + v) % 2).float().expand(3, size, size)


def test_supersampling_factor_follows_the_fisheye_pixels_per_target_pixel():
    cam, R = camera("02"), fisheye_virtual_rotation(0.0, -15.0)
    factors = [antialias_factor(fisheye_sampling_grid(K_NORM, size, cam, R), cam) for size in [(8, 24), TARGET]]
    # neighbouring target pixels lie further apart in the fisheye at 8 x 24 than at 48 x 160
    assert factors[0] > factors[1] >= 1
    assert antialias_factor(fisheye_sampling_grid(K_NORM, (8, 24), cam, R), cam, limit=3) == 3


@pytest.mark.parametrize("model", ["official", "exact"])
def test_supersampled_blocks_are_centred_on_the_target_pixel(model):
    """Averaging a pixel's s x s block of a coordinate ramp reads the fisheye where that pixel's own sample does
    (up to the curvature of the projection across one pixel): supersampling blurs, it does not shift."""
    cam, R, size = camera("02"), fisheye_virtual_rotation(0.0, -15.0), (12, 40)
    image = coordinate_image(FISH_SIZE)
    single = resample_fisheye(image, fisheye_sampling_grid(K_NORM, size, cam, R, model))
    s = 4
    grid = fisheye_sampling_grid(K_NORM, size, cam, R, model, supersample=s)
    assert grid.shape == (1, size[0] * s, size[1] * s, 2)
    averaged = resample_fisheye(image, grid, supersample=s)
    assert averaged.shape == single.shape
    shift = (averaged[:2] - single[:2]).abs() * (FISH_SIZE - 1)  # fisheye pixels
    pitch = (single[:2, :, 1:] - single[:2, :, :-1]).abs().amax() * (FISH_SIZE - 1)  # one target pixel
    assert shift.amax() < 0.05 * pitch


def test_antialiased_resampling_does_not_alias_the_finest_pattern():
    """A one-pixel checkerboard averages to grey when every fisheye pixel under a target pixel is read; one
    bilinear sample per target pixel returns whatever phase it lands on (0 ... 1): noise that differs between
    views of the same surface."""
    cam, R, size = camera("03"), fisheye_virtual_rotation(0.0, -15.0), (12, 40)
    image = checkerboard(FISH_SIZE)
    plain = resample_fisheye(image, fisheye_sampling_grid(K_NORM, size, cam, R))
    s = antialias_factor(fisheye_sampling_grid(K_NORM, size, cam, R), cam)
    smooth = resample_fisheye(image, fisheye_sampling_grid(K_NORM, size, cam, R, supersample=s), supersample=s)
    # measured: 0.163 plain, 0.036 supersampled (a box of s x s bilinear reads leaves a little of the pattern)
    assert plain.std() > 0.1
    assert smooth.std() < 0.3 * plain.std() and (smooth.mean() - 0.5).abs() < 0.02
