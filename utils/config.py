"""The shipped Hydra configuration, composed from code (scripts, the demo, the benchmark and the tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def run_directory(resume_from: str | None, fresh: str) -> str:
    """``trainer.output_dir``'s default (resolver ``run_dir``): a resumed run goes on in the directory of the
    checkpoint it resumes (``resume_from``: a run directory or a ``.pt`` file in one), a new run gets ``fresh``."""
    if resume_from is None:
        return fresh
    path = Path(str(resume_from))
    return str(path.parent if path.suffix == ".pt" else path)


def register_resolvers() -> None:
    """Make the project's resolvers (``run_dir``) known to OmegaConf; ``train.py`` calls this before Hydra
    composes, :func:`compose_config` on every call."""
    OmegaConf.register_new_resolver("run_dir", run_directory, replace=True)


def compose_config(name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """``configs/<name>.yaml`` composed with Hydra ``overrides`` (``key=value``), as ``-cn <name>`` would
    (``return_hydra_config``: with the ``hydra`` node too)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=return_hydra_config)
