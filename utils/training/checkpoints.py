"""Writing training checkpoints (atomic, rolling and best-by-metric retention) and restoring a run from one.

Names and reading live in :mod:`utils.checkpoints`. A training checkpoint holds ``model``, ``optimizer``,
``lr_scheduler``, ``trainer`` (ignite state: iteration, epoch_length, max_epochs / max_iters) and ``config`` (the
resolved run configuration as YAML). Files are written to ``<name>.tmp`` and renamed with ``os.replace``, so a
crash leaves either the previous file or the new one, never a half-written ``.pt``. Decision 4: ``resume_from``
restores everything (:func:`restore_training_state`); ``init_from`` loads model weights only
(:func:`utils.checkpoints.init_weights`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from torch import nn

from models.checkpoint import load_state_dict_exact
from utils.checkpoints import BEST_PREFIX, NAN_PREFIX, rolling_checkpoints, training_checkpoint_path

log = logging.getLogger(__name__)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (checkpoints never hold ``module.``)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, most often); nothing partial was left behind."""


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path.tmp``, flushed to disk, then renamed over ``path``.

    If writing fails, the partial ``.tmp`` is removed and :class:`CheckpointWriteError` says why: on a full disk,
    with the directory, the bytes the checkpoint needs and the bytes free.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as a RuntimeError after the OSError
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(_write_failure(path, obj, err)) from err
    os.replace(tmp, path)


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors inside a (nested) checkpoint object."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nbytes(v) for v in obj)
    return 0


def _write_failure(path: Path, obj: Any, err: BaseException) -> str:
    needed, free = _nbytes(obj), shutil.disk_usage(path.parent).free
    chain, disk_full = err, False
    while chain is not None:
        disk_full |= isinstance(chain, OSError) and chain.errno == errno.ENOSPC
        chain = chain.__cause__ or chain.__context__
    if disk_full or free < needed:
        return (
            f"no space left to write {path.name} in {path.parent}: the checkpoint needs about {needed / 2**20:.0f} MB "
            f"and {free / 2**20:.0f} MB are free. Free space there (older runs, their *.pt files) or move the run to "
            f"another disk, then resume with trainer.resume_from={path.parent}"
        )
    return f"could not write the checkpoint {path}: {type(err).__name__}: {err}"


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
        path = training_checkpoint_path(self.directory, iteration)
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
