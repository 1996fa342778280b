"""A tiny in-memory dataset of posed views, for fast training tests (instantiable from a config).

Every sample shows a textured wall 10 m in front of view 0, seen by ``num_views`` cameras stepping 0.5 m
forward; ``depth`` is the wall's z-depth (10 m everywhere), so validation metrics are well defined.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from datasets.calibration import DatasetError
from datasets.sample import Sample

K_NORM = ((0.7849, 0.0, -0.0312), (0.0, 2.9391, 0.2701), (0.0, 0.0, 1.0))  # KITTI-360's, normalised


class TinySceneDataset(Dataset):
    def __init__(
        self,
        length: int = 8,
        image_size: tuple[int, int] = (64, 96),
        num_views: int = 4,
        return_depth: bool = False,
        nan_images: bool = False,
        bad_indices: tuple[int, ...] | list[int] = (),
    ) -> None:
        """``nan_images``: every image is NaN (to provoke a non-finite loss); ``bad_indices``: samples whose image
        file is "corrupt" (reading them raises the loaders' :class:`DatasetError`)."""
        self.length = length
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_views = num_views
        self.return_depth = return_depth
        self.nan_images = nan_images
        self.bad_indices = tuple(bad_indices)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if index in self.bad_indices:
            raise DatasetError(
                f"Corrupt or unreadable image: tiny/{index:010d}.png\nRe-download or re-extract this file."
            )
        H, W = self.image_size
        V = self.num_views
        g = torch.Generator().manual_seed(index)
        texture = torch.rand(1, 3, H // 4, W // 4, generator=g)
        images = torch.nn.functional.interpolate(texture, size=(H, W), mode="bilinear", align_corners=False)
        images = (images.expand(V, 3, H, W) * 2.0 - 1.0).contiguous()  # (V, 3, H, W)
        if self.nan_images:
            images = torch.full_like(images, float("nan"))
        cam_to_world = torch.eye(4).repeat(V, 1, 1)
        cam_to_world[:, 2, 3] = 0.5 * torch.arange(V) + 100.0  # far from the origin, as in real drives
        return Sample(
            images=images,
            K_norm=torch.tensor(K_NORM).expand(V, 3, 3).clone(),
            cam_to_world=cam_to_world,
            sequence="tiny",
            frame_id=index,
            is_right=False,
            index=index,
            depth=torch.full((1, H, W), 10.0) if self.return_depth else None,
        )
