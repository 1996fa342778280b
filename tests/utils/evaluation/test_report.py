"""The evaluation's bird's-eye pictures."""

import cv2
import numpy as np

from utils.evaluation.report import save_maps


def test_worst_frame_picture_layout(tmp_path):
    occupied = np.zeros((10, 20), bool)
    occupied[2:4, 5:8] = True
    maps = {"prediction": occupied, "reference": ~occupied, "visible": np.ones((10, 20), bool)}
    path = save_maps(tmp_path / "worst", "frame_oacc0.500", maps, scale=2)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (24 + 20, 3 * 40 + 2 * 6)  # title bar over each panel, 6-pixel gaps
    panel = image[24:, :40]
    assert (panel[4:8, 10:16] == 255).all() and panel.sum() == 255 * 2 * 3 * 4  # the 2 x 3 block, scaled x2
    assert (image[24:, 40:46] == 128).all()  # the grey gap
    assert (image[24:, 46:86] == 255 - panel).all()  # "reference" is the complement
