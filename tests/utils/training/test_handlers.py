"""Handlers around the train step: the bird's-eye profile picture of validation."""

import torch

from tests.builders import build_model, tiny_batch
from utils.training.handlers import bird_eye_profile_image


def test_bird_eye_profile_image():
    model = build_model("train_kitti_360_bts", "model.samples_per_ray=8").eval()
    with torch.no_grad():
        image = bird_eye_profile_image(model, tiny_batch(num_views=2), res=(32, 24, 8))  # x, z, y: coarse, fast
    assert image.shape == (3, 24, 32) and image.min() >= 0.0 and image.max() <= 1.0
