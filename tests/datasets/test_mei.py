"""The MEI fisheye model: round trips over the whole image and hand-computed values."""

import math

import pytest
import torch

from datasets.mei import MeiCamera

# KITTI-360 image_02 calibration (realistic values).
CAM = MeiCamera(
    xi=2.2134047507854890,
    k1=1.6798235660113681e-02,
    k2=1.6548773243373522,
    p1=4.2223943394772046e-04,
    p2=4.2462134260997584e-04,
    gamma1=1.3363220825849971e03,
    gamma2=1.3357883350012958e03,
    u0=7.1694323510126321e02,
    v0=7.0576498308221585e02,
    width=1400,
    height=1400,
)


@pytest.mark.parametrize("tangential", [True, False])
def test_unproject_project_roundtrip_over_whole_image(tangential):
    pixels = CAM.pixel_grid()
    rays, valid = CAM.unproject(pixels, tangential)
    # The lens circle covers most of the sensor; its corners have no pre-image.
    assert 0.8 < valid.float().mean().item() < 0.95
    assert not valid[0, 0] and valid[700, 700]
    back, inside = CAM.project(rays[valid] * 5.0, tangential)
    assert inside.all()
    assert (back - pixels[valid]).abs().max().item() < 1e-6
    assert torch.allclose(rays[valid].norm(dim=-1), torch.ones(int(valid.sum()), dtype=torch.float64))


def test_optical_axis_lands_on_principal_point():
    pixel, valid = CAM.project(torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64))
    assert valid.item()
    assert pixel.tolist() == pytest.approx([CAM.u0, CAM.v0])


def test_hand_computed_fisheye_pixel():
    # A point 45 degrees to the right of the axis: s = (sqrt(.5), 0, sqrt(.5)).
    # x = 0.7071068 / (0.7071068 + 2.2134048) = 0.2421180, y = 0, r^2 = 0.0586211.
    # radial = 1 + k1 r^2 + k2 r^4 = 1 + 0.0009847 + 0.0056869 = 1.0066716.
    # tangential dx = p2 * (r^2 + 2 x^2) = 4.2462134e-4 * 0.1758633 = 7.4675e-5; dy = p1 * r^2.
    # u = gamma1 * (0.2421180 * 1.0066716 + 7.4675e-5) + u0 = 1336.3221 * 0.2438080 + 716.9432 = 1042.7485.
    s = math.sqrt(0.5)
    pixel, valid = CAM.project(torch.tensor([s, 0.0, s], dtype=torch.float64))
    x = s / (s + CAM.xi)
    r2 = x * x
    u = CAM.gamma1 * (x * (1 + CAM.k1 * r2 + CAM.k2 * r2 * r2) + CAM.p2 * 3 * r2) + CAM.u0
    assert u == pytest.approx(1042.7485, abs=1e-3)
    assert pixel[0].item() == pytest.approx(u, abs=1e-9)
    assert pixel[1].item() == pytest.approx(CAM.gamma2 * CAM.p1 * r2 + CAM.v0, abs=1e-9)
    assert valid.item()


def test_points_behind_the_mirror_are_invalid():
    _, valid = CAM.project(torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    assert not valid.item()
