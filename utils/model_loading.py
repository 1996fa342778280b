"""Build a model from a config and load its weights: the one loading path for eval and scripts.

A checkpoint is either ours (a dict with ``model`` and ``config``, the resolved run configuration as YAML,
written by training) or an official BTS/MVBTS/KDBTS file; :func:`utils.training.checkpoints.init_weights`
tells them apart and loads strictly. Principle 7: when our checkpoint carries its run's configuration, its
``model`` block rebuilds the model, so no model block is copied between train and eval configs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from utils.training.checkpoints import (
    BEST_PREFIX,
    best_checkpoints,
    init_weights,
    read_checkpoint,
    rolling_checkpoints,
)

log = logging.getLogger(__name__)


class MissingCheckpointError(ValueError):
    """Evaluation was asked for without weights (decision 5)."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or for a run directory its best checkpoint (lowest validation score in the
    file name), else its newest training checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {path} (give a checkpoint file or a run directory)")
    found = best_checkpoints(path) or rolling_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"no {BEST_PREFIX}_*.pt or training_checkpoint_*.pt in the run directory {path}")
    log.info("run directory %s: using %s", path, found[0].name)
    return found[0]


def checkpoint_run_config(path: str | Path) -> DictConfig | None:
    """The whole run configuration stored in one of our checkpoints (None for official files)."""
    data = read_checkpoint(Path(path), required=("model",))
    config = data.get("config")
    if not config:
        return None
    return OmegaConf.create(config) if isinstance(config, str) else OmegaConf.create(dict(config))


def checkpoint_model_config(path: str | Path) -> DictConfig | None:
    """The ``model`` block of the run configuration stored in one of our checkpoints (None for official files)."""
    run_cfg = checkpoint_run_config(path)
    return run_cfg.model if run_cfg is not None and "model" in run_cfg else None


def load_model(
    model_cfg: DictConfig, checkpoint: str | Path | None, allow_random_weights: bool, use_checkpoint_config: bool
) -> tuple[nn.Module, DictConfig]:
    """Instantiate the model and load ``checkpoint``; returns the model and the model config actually used.

    Without a checkpoint this is an error unless ``allow_random_weights`` (then the weights are random and a
    warning says so).
    """
    if checkpoint is None:
        if not allow_random_weights:
            raise MissingCheckpointError(
                "no checkpoint given: set checkpoint=<file> (ours or official), or allow_random_weights=true "
                "to evaluate an untrained model on purpose"
            )
        log.warning("allow_random_weights=true: evaluating RANDOM weights (no checkpoint loaded)")
    else:
        checkpoint = resolve_checkpoint(checkpoint)
    if checkpoint is not None and use_checkpoint_config:
        stored = checkpoint_model_config(checkpoint)
        if stored is not None:
            log.info("model built from the configuration stored in %s", checkpoint)
            model_cfg = stored
    if checkpoint is not None and OmegaConf.select(model_cfg, "field.encoder.pretrained") is not None:
        model_cfg = model_cfg.copy()
        # The checkpoint overwrites every weight, so ImageNet weights would only be a useless download.
        OmegaConf.update(model_cfg, "field.encoder.pretrained", False)
    model = instantiate(model_cfg)
    if checkpoint is not None:
        init_weights(model, checkpoint)
    return model, model_cfg
