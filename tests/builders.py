"""Models for the tests, built from the shipped configs: the YAML is the one model definition."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from models.bts import BTSModel
from models.density_field import DensityField
from utils.config import compose_config

BTS, MVBTS, KDBTS = "train_kitti_360_bts", "train_kitti_360_base", "train_kitti_360_KD"
# ResNet-18 without ImageNet weights (no network in tests) unless an override says otherwise.
SMALL = ("model.field.encoder.resnet_layers=18", "model.field.encoder.pretrained=false")
NO_VIEW_DROPOUT = "model.field.heads.multi_view.view_dropout=0"


def build_model(config: str = BTS, *overrides: str, seed: int = 0) -> BTSModel:
    """The ``model`` of a shipped training config with ``overrides``, seeded."""
    keys = {o.split("=", 1)[0] for o in overrides}
    small = [o for o in SMALL if o.split("=", 1)[0] not in keys]
    torch.manual_seed(seed)
    return instantiate(compose_config(config, [*small, *overrides]).model)


def build_field(config: str = BTS, *overrides: str, seed: int = 0) -> DensityField:
    """The density field of :func:`build_model`."""
    return build_model(config, *overrides, seed=seed).field
