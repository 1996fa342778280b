"""What both protocols need beside the model: the device, and the pixels a protocol reads."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def choose_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pixels_read(read: Callable[[Tensor], Tensor], height: int, width: int) -> Tensor:
    """Flat indices (R,), sorted and unique, of the pixels of an (H, W) map that ``read`` looks at.

    ``read`` is the protocol's own lookup (a nearest ``grid_sample``, a nearest resize plus a mask ...); it is
    applied to a map holding every pixel's own index, so the set is exactly the protocol's, rounding included.
    The indices travel as float32 in such lookups, exact below 2**24 pixels.
    """
    if height * width >= 2**24:
        raise ValueError(f"a {height}x{width} map has too many pixels to index exactly in float32")
    index = torch.arange(height * width, dtype=torch.float64).view(height, width)
    return read(index).long().unique()
