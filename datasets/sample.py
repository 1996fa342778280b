"""The sample/batch format every loader returns, written down once.

A sample holds ``V`` posed views of one moment of a drive. The view order is the dataset's
official order (KITTI-360: ``[pL(t), pL(t+1), pR(t), pR(t+1), fL(t+10), fL(t+11), fR(t+10),
fR(t+11)]``; KITTI-Raw: ``[L(t), L(t+1), R(t), R(t+1)]``); frame roles for training are chosen
elsewhere, by configuration, from these indices.

After :func:`collate` every tensor field gains a leading batch dimension ``B`` and the scalar
fields become lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor


@dataclass
class Sample:
    """One training/evaluation example (or a batch of them after :func:`collate`)."""

    images: Tensor  # (V, 3, H, W), in [-1, 1]
    K_norm: Tensor  # (V, 3, 3), intrinsics normalised to [-1, 1]
    cam_to_world: Tensor  # (V, 4, 4)
    sequence: str | list[str]
    frame_id: int | list[int]
    is_right: bool | list[bool]
    index: int | list[int]
    # Optional lidar depth ground truth of view 0 at the requested resolution,
    # (1, H_gt, W_gt), 0 where there is no measurement.
    depth: Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def num_views(self) -> int:
        return self.images.shape[-4]

    def to(self, device, non_blocking: bool = False) -> Sample:
        """Move every tensor field to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device, non_blocking=non_blocking) if isinstance(value, Tensor) else value
        return Sample(**moved)

    def pin_memory(self) -> Sample:
        """Called by ``DataLoader(pin_memory=True)``."""
        pinned = {}
        for f in fields(self):
            value = getattr(self, f.name)
            pinned[f.name] = value.pin_memory() if isinstance(value, Tensor) else value
        return Sample(**pinned)


def collate(samples: list[Sample]) -> Sample:
    """Stack samples into a batch: tensors get a leading ``B``, other fields become lists."""
    merged = {}
    for f in fields(Sample):
        values = [getattr(s, f.name) for s in samples]
        if f.name == "depth" and any(v is None for v in values):
            if not all(v is None for v in values):
                raise ValueError("collate: some samples have depth ground truth and some do not")
            merged[f.name] = None
        elif isinstance(values[0], Tensor):
            merged[f.name] = torch.stack(values)
        elif f.name == "extras":
            merged[f.name] = {k: [v[k] for v in values] for k in values[0]}
        else:
            merged[f.name] = values
    return Sample(**merged)
