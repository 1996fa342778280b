"""Models and training configs for the tests, built from the shipped configs: the YAML is the one definition."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from datasets.sample import Sample, collate
from models.bts import BTSModel
from models.density_field import DensityField
from tests.scenes import TinySceneDataset
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


def small_kdbts(**model_keys) -> BTSModel:
    """The KITTI-360 KDBTS model (teacher and student, no view dropout) at a tiny size: 128 rays x 8 samples;
    ``model_keys`` override keys of the model config (``density_head="single_view"``, ``frozen_heads=[...]``)."""
    sized = {"ray_batch_size": 128, "samples_per_ray": 8, **model_keys}
    overrides = [
        f"model.{k}=[{','.join(map(str, v))}]" if isinstance(v, list | tuple) else f"model.{k}={v}"
        for k, v in sized.items()
    ]
    return build_model(KDBTS, NO_VIEW_DROPOUT, *overrides)


def tiny_batch(num_views: int = 8, image_size: tuple[int, int] = (64, 64), with_depth: bool = False) -> Sample:
    """Two tiny in-memory scenes (:class:`tests.scenes.TinySceneDataset`) collated into a batch."""
    ds = TinySceneDataset(length=2, image_size=image_size, num_views=num_views, return_depth=with_depth)
    return collate([ds[0], ds[1]])


def build_field(config: str = BTS, *overrides: str, seed: int = 0) -> DensityField:
    """The density field of :func:`build_model`."""
    return build_model(config, *overrides, seed=seed).field


# Adds the `data=tiny` option (tests/hydra/data/tiny.yaml: tiny in-memory scenes) to the shipped config tree.
SEARCHPATH = f"hydra.searchpath=[file://{Path(__file__).resolve().parent / 'hydra'}]"


def tiny_overrides(output_dir: Path, *extra: str) -> list[str]:
    """The synthetic training config with the debug overlay on tiny in-memory scenes."""
    return [
        SEARCHPATH,
        "data=tiny",
        "debug=default",
        "data.image_size=[64,64]",
        f"trainer.output_dir={output_dir}",
        *extra,
    ]


def tiny_config(output_dir: Path, *extra: str) -> DictConfig:
    """``train_synthetic_bts`` on tiny scenes at debug size, writing into ``output_dir``."""
    return compose_config("train_synthetic_bts", tiny_overrides(output_dir, *extra))
