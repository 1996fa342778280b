"""Colour augmentation shared by the loaders (REFERENCE 6.3).

One set of jitter parameters is drawn per sample and applied to every view of it, so that
photometric consistency between views is preserved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF
from torch import Tensor
from torchvision.transforms import ColorJitter


@dataclass(frozen=True)
class ColorJitterParams:
    """Parameters drawn once per sample: the op order and the four factors."""

    order: tuple[int, ...]
    brightness: float
    contrast: float
    saturation: float
    hue: float

    @classmethod
    def sample(
        cls,
        brightness: tuple[float, float] = (0.8, 1.2),
        contrast: tuple[float, float] = (0.8, 1.2),
        saturation: tuple[float, float] = (0.8, 1.2),
        hue: tuple[float, float] = (-0.1, 0.1),
        generator: torch.Generator | None = None,
    ) -> ColorJitterParams:
        """Draw parameters as torchvision's ``ColorJitter.get_params`` does (same ranges as official)."""
        if generator is None:
            order, b, c, s, h = ColorJitter.get_params(list(brightness), list(contrast), list(saturation), list(hue))
            return cls(tuple(order.tolist()), float(b), float(c), float(s), float(h))
        order = torch.randperm(4, generator=generator)

        def uniform(bounds):
            return float(torch.empty(1).uniform_(bounds[0], bounds[1], generator=generator))

        return cls(tuple(order.tolist()), uniform(brightness), uniform(contrast), uniform(saturation), uniform(hue))

    def apply(self, colors: Tensor) -> Tensor:
        """Jitter colours in [0, 1], shape (..., 3, H, W), in the drawn order."""
        for op in self.order:
            if op == 0:
                colors = TF.adjust_brightness(colors, self.brightness)
            elif op == 1:
                colors = TF.adjust_contrast(colors, self.contrast)
            elif op == 2:
                colors = TF.adjust_saturation(colors, self.saturation)
            else:
                colors = TF.adjust_hue(colors, self.hue)
        return colors
