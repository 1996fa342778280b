"""BTS training: ``train(cfg)`` launches ``training`` in one or more processes (ignite.distributed).

Layout after the ignite code-generator: ``setup_data`` / ``setup_model`` / ``setup_optimization`` build the
pieces from the config with ``hydra.utils.instantiate``; ``setup_trainer`` wires the train step and handlers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import ignite.distributed as idist
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from ignite.engine import Engine
from ignite.handlers import TensorboardLogger
from ignite.utils import manual_seed
from omegaconf import DictConfig, OmegaConf
from torch import nn

from utils.checkpoints import find_resume_checkpoint, init_weights
from utils.host_memory import reuse_freed_memory
from utils.training import handlers
from utils.training.checkpoints import CheckpointWriter, restore_training_state, training_state, unwrap
from utils.training.data import setup_data
from utils.training.run_dir import (
    claim_run_directory,
    explicit_keys,
    read_manifest,
    release_run_directory,
    resume_config,
)
from utils.training.steps import TrainStep, bf16_applies, make_eval_step

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What one process ends with (returned by :func:`training`; :func:`train` returns nothing)."""

    model: nn.Module  # unwrapped (no DDP)
    iteration: int
    val_metrics: dict[str, float]
    output_dir: Path


def select_device(name: str) -> torch.device:
    """``auto``: the process's accelerator (cuda:<local rank>) if there is one, else the CPU."""
    if name == "auto":
        return idist.device()
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"trainer.device={name!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={name} but CUDA is not available; use auto or cpu")
    if idist.get_world_size() > 1 and device.type != idist.device().type:
        raise ValueError(f"trainer.device={name} conflicts with the distributed device {idist.device()}; use auto")
    return device


def setup_model(cfg: DictConfig, device: torch.device, resuming: bool = False) -> nn.Module:
    """The model from ``cfg.model``, initialised from ``init_from`` unless ``resuming`` (the checkpoint then
    restores every weight), on ``device`` (DDP if distributed)."""
    model = instantiate(cfg.model)
    if cfg.trainer.init_from is not None and not resuming:
        path = init_weights(model, cfg.trainer.init_from, new_heads=cfg.trainer.init_new_heads)
        log.info("init_from %s: model weights only, the optimizer and the schedule start fresh", path)
    if cfg.trainer.compile:
        # Only the convolutional trunk: fixed shapes, one graph. Rays, sampling and compositing have data-dependent
        # shapes and stay eager. ``Module.compile`` works in place, so state_dict keys (checkpoints) do not change.
        log.info("compiling the image encoder with torch.compile (the first iterations are slow)")
        model.field.encoder.compile()
    if idist.get_world_size() > 1:
        # The scale-1..3 output convolutions exist only so that official checkpoints load; they get no gradient.
        return idist.auto_model(model, find_unused_parameters=True)
    # One process: no DataParallel (auto_model would add it on multi-GPU machines); use nproc_per_node instead.
    return model.to(device)


def setup_optimization(
    trainer_cfg: DictConfig, model: nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Optimizer and (per-iteration) scheduler from their ``_partial_`` configs."""
    optimizer = idist.auto_optim(instantiate(trainer_cfg.optimizer)(params=model.parameters()))
    lr_scheduler = instantiate(trainer_cfg.lr_scheduler)(optimizer=optimizer)
    return optimizer, lr_scheduler


def setup_trainer(
    cfg: DictConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    val_loader,
    device: torch.device,
    output_dir: Path,
    run_id: str,
    target: int,
    stop: handlers.StopSignal,
) -> tuple[Engine, Engine, TensorboardLogger | None]:
    """Trainer and evaluator engines with every handler; TensorBoard, checkpoints and the bar on rank 0 only."""
    tcfg = cfg.trainer
    trainer = Engine(TrainStep(model, optimizer, instantiate(cfg.loss), device, tcfg.bf16))
    evaluator = Engine(make_eval_step(model, device, tcfg.bf16))
    handlers.attach_depth_metrics(evaluator)

    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)

    def state_fn() -> dict:
        return {**training_state(model, optimizer, lr_scheduler, trainer, config_yaml), "run_id": run_id}

    rank0 = idist.get_rank() == 0
    writer = CheckpointWriter(output_dir, tcfg.n_saved, tcfg.n_saved_best) if rank0 else None
    handlers.attach_checkpoint_on_exception(trainer, writer, state_fn)  # first: it tracks completed iterations
    handlers.attach_nan_guard(trainer, writer, state_fn)
    handlers.attach_lr_scheduler(trainer, lr_scheduler)
    if writer is not None:
        handlers.attach_checkpointing(trainer, writer, state_fn, tcfg.checkpoint_every)
        handlers.attach_best_checkpoint(evaluator, trainer, writer, state_fn)
    handlers.attach_validation(trainer, evaluator, val_loader, tcfg.validate_every, at_start=tcfg.validate_at_start)
    tb = None
    if rank0:
        tb = handlers.attach_tensorboard(trainer, evaluator, optimizer, str(output_dir), tcfg.log_every, config_yaml)
        handlers.attach_visualization(evaluator, trainer, tb, unwrap(model), tcfg.visualize_profile)
        handlers.attach_progress_bar(trainer, target)
    handlers.attach_stop_on_signal(trainer, writer, state_fn, stop)
    if idist.get_world_size() > 1:
        handlers.attach_replica_check(trainer, model)
    return trainer, evaluator, tb


def target_iterations(trainer_cfg: DictConfig, train_loader) -> int:
    """``max_iters`` if set, else ``num_epochs`` epochs of the loader."""
    if trainer_cfg.max_iters is not None:
        return trainer_cfg.max_iters
    return trainer_cfg.num_epochs * len(train_loader)


def run_trainer(trainer: Engine, train_loader, num_epochs: int, max_iters: int | None) -> None:
    """Run (or continue, after a resume) until ``max_iters`` iterations if set, else ``num_epochs`` epochs."""
    target = max_iters if max_iters is not None else num_epochs * len(train_loader)
    if trainer.state.iteration >= target:
        log.info("nothing to do: iteration %d already reaches the target %d", trainer.state.iteration, target)
        return
    resumed = trainer.state.iteration > 0
    if max_iters is not None:
        if resumed:  # switch a resumed state to this run's limit (ignite keeps one of max_epochs / max_iters)
            trainer.state.max_epochs, trainer.state.max_iters = None, max_iters
        trainer.run(train_loader, max_iters=max_iters)
    else:
        if resumed:
            trainer.state.max_iters, trainer.state.max_epochs = None, num_epochs
        trainer.run(train_loader, max_epochs=num_epochs)


def training(
    local_rank: int, cfg: DictConfig, output_dir: str | Path, explicit: tuple[str, ...] = ()
) -> TrainingResult:
    """The whole run in one process (``local_rank`` is given by ignite's launcher).

    ``explicit``: the config keys given on the command line (a resumed run keeps its iteration target unless one
    of them sets it). A SIGTERM / SIGINT saves the iteration in progress and ends with exit code 128 + signal; an
    exception inside the loop saves the last completed iteration and propagates.
    """
    if not logging.getLogger().handlers:  # spawned workers inherit no logging configuration
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    reuse_freed_memory()  # before the first large buffer: the step's fresh buffers then skip their page faults
    output_dir = Path(output_dir)
    checkpoint = None
    if cfg.trainer.resume_from is not None:
        resume_path, checkpoint = find_resume_checkpoint(cfg.trainer.resume_from)
        cfg = resume_config(checkpoint["config"], cfg, explicit)
        if cfg.trainer.init_from is not None:
            log.info("trainer.resume_from restores every weight: trainer.init_from is not used")
    tcfg = cfg.trainer
    rank = idist.get_rank()
    manual_seed(tcfg.seed + rank)
    device = select_device(tcfg.device)
    if tcfg.bf16 and not bf16_applies(device, True):
        log.warning(
            "trainer.bf16=true applies to CUDA and to CPUs with native bf16 (AVX-512 BF16 / AMX) only: this run "
            "on %s computes in float32",
            device,
        )
    elif tcfg.bf16 and device.type == "cpu":
        log.info("trainer.bf16=true: the image encoder runs in bf16 on this CPU (native bf16 convolutions)")
    resumed_run_id = None if checkpoint is None else checkpoint.get("run_id", "legacy")
    with claimed_directory(output_dir, cfg.name, resumed_run_id) as run_id:
        log.info("process %d/%d on %s, output %s", rank, idist.get_world_size(), device, output_dir)
        train_loader, val_loader = setup_data(cfg.data, tcfg, output_dir)
        model = setup_model(cfg, device, resuming=checkpoint is not None)
        optimizer, lr_scheduler = setup_optimization(tcfg, model)
        target = target_iterations(tcfg, train_loader)
        stop = handlers.StopSignal().install()
        try:
            trainer, evaluator, tb = setup_trainer(
                cfg, model, optimizer, lr_scheduler, val_loader, device, output_dir, run_id, target, stop
            )
            if checkpoint is not None:
                restore_training_state(checkpoint, model, optimizer, lr_scheduler, trainer)
                log.info("resumed from %s at iteration %d", resume_path, trainer.state.iteration)
            try:
                run_trainer(trainer, train_loader, tcfg.num_epochs, tcfg.max_iters)
            finally:
                if tb is not None:
                    tb.close()
        finally:
            stop.restore()
    signum = getattr(trainer.state, "stop_signal", None)
    if signum is not None:
        saved = getattr(trainer.state, "stop_checkpoint", None)
        log.error(
            "stopped by %s after iteration %d%s; resume with trainer.resume_from=%s",
            signal.Signals(signum).name,
            trainer.state.iteration,
            f", saved in {saved}" if saved is not None else "",
            output_dir,
        )
        raise SystemExit(128 + signum)
    metrics = {k: float(v) for k, v in evaluator.state.metrics.items()}
    return TrainingResult(
        model=unwrap(model),
        iteration=trainer.state.iteration,
        val_metrics=metrics,
        output_dir=output_dir,
    )


@contextlib.contextmanager
def claimed_directory(output_dir: Path, name: str, resumed_run_id: str | None) -> Iterator[str]:
    """Rank 0 claims the output directory (:func:`claim_run_directory`); every process gets the run id. A fresh run
    that fails before it has saved a checkpoint (a missing dataset, weights that do not fit) gives the directory
    back on the way out (:func:`release_run_directory`), so the same command runs again once the cause is fixed."""
    if idist.get_rank() == 0:
        run_id = claim_run_directory(output_dir, name, resumed_run_id).run_id
    if idist.get_world_size() > 1:
        idist.barrier()
        run_id = read_manifest(output_dir).run_id
    try:
        yield run_id
    except BaseException:
        if resumed_run_id is None and idist.get_rank() == 0:
            release_run_directory(output_dir, run_id)
        raise


def resolve_backend(trainer_cfg: DictConfig) -> str | None:
    """The configured backend, or nccl/gloo (GPU/CPU) when several processes are asked for or torchrun set them."""
    if trainer_cfg.backend is not None:
        return trainer_cfg.backend
    spawned = trainer_cfg.nproc_per_node is not None and trainer_cfg.nproc_per_node > 1
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun
    if spawned or launched:
        return "nccl" if torch.cuda.is_available() else "gloo"
    return None


def resolve_output_dir(trainer_cfg: DictConfig) -> Path:
    """The run directory: Hydra's (``hydra.run.dir`` is ``trainer.output_dir``; a multirun job gets its own
    subdirectory of it), or ``trainer.output_dir`` outside Hydra."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    if trainer_cfg.output_dir is None:
        raise ValueError("trainer.output_dir is null and there is no Hydra run directory; set trainer.output_dir")
    return Path(trainer_cfg.output_dir)


def train(cfg: DictConfig, overrides: Collection[str] | None = None) -> None:
    """Train in the configured number of processes; see ``configs/trainer/default.yaml``.

    ``overrides``: the ``key=value`` overrides ``cfg`` was composed with, when it was composed from code (under
    Hydra they are read from the command line); a resumed run takes a new iteration target only from them.
    """
    output_dir = resolve_output_dir(cfg.trainer)
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.copy()
    OmegaConf.update(cfg, "trainer.output_dir", str(output_dir))  # resolved once (it may hold ${now:...})
    if overrides is None:
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else ()
    explicit = tuple(explicit_keys(overrides))
    backend = resolve_backend(cfg.trainer)
    nproc = cfg.trainer.nproc_per_node if backend is not None else None
    with idist.Parallel(backend=backend, nproc_per_node=nproc) as parallel:
        parallel.run(training, cfg, output_dir, explicit)
