"""Checkpoint files: naming, finding, reading, and building a model from one (ours or official).

The one place that knows how checkpoints are named and read; training (:mod:`utils.training.checkpoints`) only
writes and restores them, and evaluation, the scripts and ``init_from`` load models through :func:`load_model` /
:func:`init_weights`.

Our checkpoints are dicts: rolling training checkpoints ``training_checkpoint_<iteration>.pt`` hold ``model``,
``optimizer``, ``lr_scheduler``, ``trainer`` and ``config`` (the resolved run configuration as YAML), best ones
``best_checkpoint_<iteration>_<metric>_<score>.pt`` hold ``model`` and ``config``. Official BTS / MVBTS / KDBTS
files hold ``model`` with ``renderer.net.*`` keys and are converted by :mod:`models.checkpoint`. Every file is read
with ``torch.load(weights_only=True)``; loading is strict (decision 4): a missing, unexpected or mis-shaped key
raises :class:`models.checkpoint.CheckpointError` listing them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from models.checkpoint import CheckpointError, detect_architecture, load_official_state, load_state_dict_exact
from models.density_field import DensityField

log = logging.getLogger(__name__)

TRAINING_PREFIX = "training_checkpoint"
BEST_PREFIX = "best_checkpoint"
NAN_PREFIX = "nan_checkpoint"
TRAINING_KEYS = ("model", "optimizer", "lr_scheduler", "trainer", "config")
_ITERATION = re.compile(rf"^{TRAINING_PREFIX}_(\d+)\.pt$")
OFFICIAL_KEY_PREFIX = "renderer.net."


def training_checkpoint_path(directory: str | Path, iteration: int) -> Path:
    """The rolling checkpoint of ``iteration`` in a run directory: ``training_checkpoint_<iteration>.pt``."""
    return Path(directory) / f"{TRAINING_PREFIX}_{iteration}.pt"


def checkpoint_iteration(path: Path) -> int | None:
    """The iteration in a rolling checkpoint's name, or None for other files."""
    match = _ITERATION.match(path.name)
    return int(match.group(1)) if match else None


def rolling_checkpoints(directory: Path) -> list[Path]:
    """``training_checkpoint_<iteration>.pt`` files in ``directory``, newest (highest iteration) first."""
    found = [(checkpoint_iteration(p), p) for p in Path(directory).glob(f"{TRAINING_PREFIX}_*.pt")]
    return [p for it, p in sorted(((it, p) for it, p in found if it is not None), reverse=True)]


def best_checkpoints(directory: Path) -> list[Path]:
    """``best_checkpoint_<iteration>_<metric>_<score>.pt`` files in ``directory``, lowest score first."""

    def score(path: Path) -> float:
        try:
            return float(path.stem.rsplit("_", 1)[-1])
        except ValueError:
            return float("inf")

    return sorted(Path(directory).glob(f"{BEST_PREFIX}_*.pt"), key=score)


def read_checkpoint(path: Path, required: tuple[str, ...] = TRAINING_KEYS) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU (``weights_only=True``); raise if it is unreadable or lacks a key."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupted or not a torch file: all mean "not a usable checkpoint"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} does not hold a checkpoint dict but a {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; it has {sorted(data)}")
    return dict(data)


def find_resume_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint file, or a run directory's newest complete rolling checkpoint, loaded.

    In a directory, unreadable or incomplete files (e.g. truncated by a crash outside :func:`atomic_save`) are
    skipped with a warning; the newest readable one is used.
    """
    path = Path(path)
    if path.is_file():
        return path, read_checkpoint(path)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from: no such file or directory: {path}")
    for candidate in rolling_checkpoints(path):
        try:
            return candidate, read_checkpoint(candidate)
        except CheckpointError as err:
            log.warning("skipping incomplete checkpoint: %s", err)
    raise FileNotFoundError(f"resume_from: no complete {TRAINING_PREFIX}_<iteration>.pt in {path}")


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


def is_official(state: Mapping[str, Any]) -> bool:
    """Whether a model state dict is an official one (``renderer.net.*`` keys)."""
    return any(key.startswith(OFFICIAL_KEY_PREFIX) for key in state)


def stored_run_config(data: Mapping[str, Any]) -> DictConfig | None:
    """The run configuration a checkpoint dict of ours carries (None for official files)."""
    config = data.get("config")
    if not config:
        return None
    return OmegaConf.create(config) if isinstance(config, str) else OmegaConf.create(dict(config))


def load_weights(
    model: nn.Module, data: Mapping[str, Any], source: Path, new_heads: tuple[str, ...] | list[str] = ()
) -> None:
    """Load the ``model`` weights of a checkpoint dict (ours or official, told apart by key names) strictly.

    ``model`` is a BTS model (official weights go into its ``field``) or a bare density field. ``new_heads``:
    density heads the checkpoint is allowed to lack (e.g. the KDBTS student when starting from an MVBTS
    checkpoint); they keep their fresh initialisation and are logged. Every other difference is an error that
    lists the keys.
    """
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    field = module if isinstance(module, DensityField) else module.field
    for name in new_heads:
        if name not in field.heads:
            raise ValueError(f"init_new_heads: {name!r} is not one of the model's heads {list(field.heads)}")
    if is_official(data["model"]):
        allowed = tuple(f"heads.{h}." for h in new_heads)
        load_official_state(field, data["model"], str(source), allow_missing_prefixes=allowed)
    else:
        prefix = "" if module is field else "field."
        allowed = tuple(f"{prefix}heads.{h}." for h in new_heads)
        load_state_dict_exact(module, data["model"], allow_missing_prefixes=allowed)
    log.info("loaded model weights from %s", source)


def init_weights(model: nn.Module, path: str | Path, new_heads: tuple[str, ...] | list[str] = ()) -> Path:
    """:func:`load_weights` from a checkpoint file, or a run directory's newest complete training checkpoint;
    returns the file read."""
    path = Path(path)
    if path.is_dir():
        path, data = find_resume_checkpoint(path)
    else:
        data = read_checkpoint(path, required=("model",))
    load_weights(model, data, path, new_heads)
    return path


class LoadedModel(NamedTuple):
    """What :func:`load_model` gives: the model, the model config it was built from, the run configuration stored in
    the checkpoint (None for official files and random weights) and the file read (a run directory resolved; None for
    random weights)."""

    model: nn.Module
    model_cfg: DictConfig
    run_cfg: DictConfig | None
    source: Path | None


def load_model(
    model_cfg: DictConfig, checkpoint: str | Path | None, allow_random_weights: bool, use_checkpoint_config: bool
) -> LoadedModel:
    """Instantiate the model and load ``checkpoint`` (a file or a run directory, :func:`resolve_checkpoint`);
    returns the model, the model config actually used and the checkpoint's stored run configuration (read once).

    The architecture comes from the checkpoint where it says it: our checkpoints rebuild the model from their
    stored run configuration (``use_checkpoint_config``), official files set the ResNet depth. Without a
    checkpoint this is an error unless ``allow_random_weights`` (then the weights are random and a warning says
    so).
    """
    data, source = None, None
    if checkpoint is None:
        if not allow_random_weights:
            raise MissingCheckpointError(
                "no checkpoint given: set checkpoint=<file> (ours or official), or allow_random_weights=true "
                "to evaluate an untrained model on purpose"
            )
        log.warning("allow_random_weights=true: evaluating RANDOM weights (no checkpoint loaded)")
    else:
        source = resolve_checkpoint(checkpoint)
        data = read_checkpoint(source, required=("model",))
        model_cfg = _architecture_from_checkpoint(model_cfg, data, source, use_checkpoint_config)
    model = instantiate(model_cfg)
    if data is not None:
        load_weights(model, data, source)
    return LoadedModel(model, model_cfg, stored_run_config(data) if data is not None else None, source)


def _architecture_from_checkpoint(
    model_cfg: DictConfig, data: Mapping[str, Any], source: Path, use_checkpoint_config: bool
) -> DictConfig:
    """``model_cfg`` with what the checkpoint says about the architecture, and no ImageNet download (the
    checkpoint overwrites every weight)."""
    model_cfg = model_cfg.copy()
    if is_official(data["model"]):
        depth = detect_architecture(data["model"]).resnet_layers
        if OmegaConf.select(model_cfg, "field.encoder.resnet_layers") != depth:
            log.info("%s holds a ResNet-%d encoder: the model is built with it", source, depth)
            OmegaConf.update(model_cfg, "field.encoder.resnet_layers", depth)
    elif use_checkpoint_config:
        run_cfg = stored_run_config(data)
        if run_cfg is not None and "model" in run_cfg:
            log.info("model built from the configuration stored in %s", source)
            model_cfg = run_cfg.model.copy()
    if OmegaConf.select(model_cfg, "field.encoder.pretrained") is not None:
        OmegaConf.update(model_cfg, "field.encoder.pretrained", False)
    return model_cfg
