"""BTS can fit one fixed batch of the synthetic world: the photometric loss falls by a stated factor.

The batch, the frame roles, the patches and the ray samples are all fixed (one generator seed reused at
every step), so the only thing that changes between steps is the network. A model that cannot lower the
loss on data it sees again and again has a broken gradient path (encoder, field, renderer or loss).
"""

from __future__ import annotations

import torch

from datasets.kitti_360 import Kitti360Dataset
from datasets.sample import collate
from models.bts import BTSModel
from models.losses import LossConfig, reconstruction_loss
from tests.builders import BTS, build_field

STEPS = 60
LR = 5e-4
# First / best-of-last-5 photometric loss. Measured on 2026-12-06 on the test world: 3.3-3.8x (0.0999 -> 0.030,
# the feature lookup's two backward forms). At lr 1e-3 the loss sat on a plateau near 2.0x for 40-80 steps (the
# rounding of either form decided which side of 2.0 it ended on), so the test now uses the lower rate.
REQUIRED_FACTOR = 2.5


def test_bts_overfits_one_fixed_batch(synthetic_root):
    dataset = Kitti360Dataset(
        data_path=synthetic_root / "KITTI-360",
        split_path=synthetic_root / "KITTI-360" / "splits" / "train_files.txt",
        image_size=(64, 192),
    )
    batch = collate([dataset[0], dataset[len(dataset) // 2]])
    torch.manual_seed(0)
    model = BTSModel(
        build_field(BTS),
        "kitti360-mono",
        ray_batch_size=256,
        samples_per_ray=32,
        flip_p=0.0,
    ).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    cfg = LossConfig()

    losses = []
    for _ in range(STEPS):
        out = model(batch, generator=torch.Generator().manual_seed(7))  # same roles, patches and samples
        terms = reconstruction_loss(out.render, out.target, cfg)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        losses.append(terms.photometric.item())

    first, last = losses[0], min(losses[-5:])
    assert all(torch.isfinite(torch.tensor(losses)))
    assert first / last >= REQUIRED_FACTOR, f"photometric loss {first:.4f} -> {last:.4f} ({first / last:.2f}x)"
