"""Configs for training tests: the real configs composed with the debug overlay, on tiny in-memory data."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(REPO / "configs")
# Adds the `data=tiny` option (tests/training/configs/data/tiny.yaml) to the real config tree.
SEARCHPATH = f"hydra.searchpath=[file://{Path(__file__).resolve().parent / 'configs'}]"


def compose_config(name: str, overrides: list[str] = ()) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=name, overrides=list(overrides))


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
