"""Configs for training tests: the real configs composed with the debug overlay, on tiny in-memory data."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from utils.config import compose_config

# Adds the `data=tiny` option (tests/training/configs/data/tiny.yaml) to the real config tree.
SEARCHPATH = f"hydra.searchpath=[file://{Path(__file__).resolve().parent / 'configs'}]"


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
    return compose_config("train_synthetic_bts", tiny_overrides(output_dir, *extra))
