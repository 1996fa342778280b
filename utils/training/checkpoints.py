"""Training checkpoints: atomic writes, rolling and best-by-metric retention, resume and weight initialisation.

A training checkpoint ``training_checkpoint_<iteration>.pt`` is a dict with ``model``, ``optimizer``,
``lr_scheduler``, ``trainer`` (ignite state: iteration, epoch_length, max_epochs / max_iters) and ``config`` (the
resolved run configuration as YAML). Files are written to ``<name>.tmp`` and renamed with ``os.replace``, so a
crash leaves either the previous file or the new one, never a half-written ``.pt``.

Decision 4: ``resume_from`` restores everything; ``init_from`` loads model weights only. Loading is strict: a
missing, unexpected or mis-shaped key raises :class:`models.checkpoint.CheckpointError` listing them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from torch import nn

from models.checkpoint import CheckpointError, load_official_checkpoint, load_state_dict_exact
from models.density_field import DensityField

log = logging.getLogger(__name__)

TRAINING_PREFIX = "training_checkpoint"
BEST_PREFIX = "best_checkpoint"
NAN_PREFIX = "nan_checkpoint"
TRAINING_KEYS = ("model", "optimizer", "lr_scheduler", "trainer", "config")
_ITERATION = re.compile(rf"^{TRAINING_PREFIX}_(\d+)\.pt$")
OFFICIAL_KEY_PREFIX = "renderer.net."


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (checkpoints never hold ``module.``)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path.tmp``, flushed to disk, then renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def restore_training_state(
    checkpoint: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer: Engine,
) -> None:
    """Load model (strictly), optimizer, scheduler and trainer state from a training checkpoint."""
    load_state_dict_exact(unwrap(model), checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
    trainer.load_state_dict(checkpoint["trainer"])


def init_weights(model: nn.Module, path: str | Path, new_heads: tuple[str, ...] | list[str] = ()) -> None:
    """Model weights only, from one of our checkpoints or an official checkpoint (told apart by key names).

    ``model`` is a BTS model (official weights go into its ``field``) or a bare density field. ``path`` may be
    a run directory (its newest complete training checkpoint). ``new_heads``: density heads the checkpoint is
    allowed to lack (e.g. the KDBTS student when starting from an MVBTS checkpoint); they keep their fresh
    initialisation and are logged. Every other difference is an error that lists the keys.
    """
    path = Path(path)
    if path.is_dir():
        path, data = find_resume_checkpoint(path)
    else:
        data = read_checkpoint(path, required=("model",))
    module = unwrap(model)
    field = module if isinstance(module, DensityField) else module.field
    for name in new_heads:
        if name not in field.heads:
            raise ValueError(f"init_new_heads: {name!r} is not one of the model's heads {list(field.heads)}")
    if any(key.startswith(OFFICIAL_KEY_PREFIX) for key in data["model"]):
        load_official_checkpoint(field, path, allow_missing_prefixes=tuple(f"heads.{h}." for h in new_heads))
    else:
        prefix = "" if module is field else "field."
        allowed = tuple(f"{prefix}heads.{h}." for h in new_heads)
        load_state_dict_exact(module, data["model"], allow_missing_prefixes=allowed)
    log.info("initialised model weights from %s (optimizer and schedule start fresh)", path)


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer: Engine,
    config_yaml: str,
) -> dict[str, Any]:
    """Everything :func:`restore_training_state` needs, as a checkpoint dict."""
    return {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "trainer": dict(trainer.state_dict()),
        "config": config_yaml,
    }


class CheckpointWriter:
    """Writes checkpoints into ``directory`` (call on rank 0 only); keeps the newest ``n_saved`` rolling ones
    and the ``n_saved_best`` best by a metric (lower is better)."""

    def __init__(self, directory: Path, n_saved: int, n_saved_best: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.n_saved = n_saved
        self.n_saved_best = n_saved_best
        self._best: list[tuple[float, Path]] = []  # (score, path), best first
        for stale in self.directory.glob("*_checkpoint*.pt.tmp"):
            log.warning("removing an interrupted checkpoint write: %s", stale)
            stale.unlink()

    def save(self, state: dict[str, Any], iteration: int) -> Path:
        """A rolling checkpoint; the oldest beyond ``n_saved`` are deleted (also those of an earlier session)."""
        path = self.directory / f"{TRAINING_PREFIX}_{iteration}.pt"
        atomic_save(state, path)
        for old in rolling_checkpoints(self.directory)[self.n_saved :]:
            old.unlink()
        log.info("saved %s", path)
        return path

    def save_best(self, state: dict[str, Any], iteration: int, name: str, score: float) -> Path | None:
        """Keep ``state`` if ``score`` is among the ``n_saved_best`` lowest seen in this session."""
        if len(self._best) >= self.n_saved_best and score >= self._best[-1][0]:
            return None
        path = self.directory / f"{BEST_PREFIX}_{iteration}_{name}_{score:.4f}.pt"
        atomic_save(state, path)
        self._best = sorted([*self._best, (score, path)], key=lambda item: item[0])
        for _, old in self._best[self.n_saved_best :]:
            old.unlink(missing_ok=True)
        self._best = self._best[: self.n_saved_best]
        log.info("new best %s = %.4f: saved %s", name, score, path)
        return path

    def save_nan(self, state: dict[str, Any], iteration: int) -> Path:
        """The state just before a non-finite loss (outside the rolling set, so it never displaces a good one)."""
        path = self.directory / f"{NAN_PREFIX}_{iteration}.pt"
        atomic_save(state, path)
        return path
