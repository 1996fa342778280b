"""Ignite handlers around the train step: schedule, NaN guard, checkpoints, validation, logging, progress."""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import TensorboardLogger
from ignite.handlers.tensorboard_logger import OptimizerParamsHandler, OutputHandler
from ignite.metrics import Average
from torch import Tensor, nn
from tqdm import tqdm

from datasets.sample import Sample
from models.bts import BTSModel
from utils.metrics import DEPTH_METRICS
from utils.occupancy.grid import PROFILE_RES, level_to_cam, render_profile
from utils.training.checkpoints import CheckpointWriteError, CheckpointWriter
from utils.training.steps import EvalStepOutput, TrainStepOutput
from utils.visualization import colorize, colorize_depth

log = logging.getLogger(__name__)

StateFn = Callable[[], dict[str, Any]]  # builds the checkpoint dict of the current training state
PROFILE_CHUNK = 65536  # density queries per call for the bird's-eye profile


def attach_nan_guard(trainer: Engine, writer: CheckpointWriter | None, state_fn: StateFn) -> None:
    """On a non-finite loss: write ``nan_checkpoint_<it>.pt`` and stop.

    The checkpoint holds the parameters before the bad batch (no update was made), for diagnosis; BatchNorm
    running statistics did see the batch. Resume from the last rolling checkpoint instead.
    """

    def on_iteration(engine: Engine) -> None:
        out: TrainStepOutput = engine.state.output
        if out.finite:
            return
        where = ""
        if writer is not None:
            where = f"; the state before this batch is saved in {writer.save_nan(state_fn(), engine.state.iteration)}"
        log.error(
            "non-finite loss at iteration %d (loss=%s, photometric=%s, smoothness=%s): stopping training%s",
            engine.state.iteration,
            out.loss,
            out.photometric,
            out.smoothness,
            where,
        )
        engine.terminate()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, on_iteration)


def attach_lr_scheduler(trainer: Engine, lr_scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Step the PyTorch scheduler after every iteration, so its step counts are iterations (as officially)."""

    def step(engine: Engine) -> None:
        if engine.state.output.finite:
            lr_scheduler.step()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, step)


def attach_checkpointing(trainer: Engine, writer: CheckpointWriter, state_fn: StateFn, every: int) -> None:
    """A rolling checkpoint every ``every`` iterations and when training completes."""

    def save(engine: Engine) -> None:
        if engine.state.output is not None and not engine.state.output.finite:
            return
        writer.save(state_fn(), engine.state.iteration)

    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=every), save)

    def save_final(engine: Engine) -> None:
        if engine.state.iteration % every != 0:
            save(engine)

    trainer.add_event_handler(Events.COMPLETED, save_final)


def attach_depth_metrics(evaluator: Engine) -> None:
    """Mean over validation images (and processes) of each depth metric."""
    for name in DEPTH_METRICS:
        Average(output_transform=lambda out, name=name: out.metrics[name]).attach(evaluator, name)

    def as_floats(engine: Engine) -> None:  # Average gives 1-element tensors; loggers and checkpoints want numbers
        engine.state.metrics = {k: float(v) for k, v in engine.state.metrics.items()}

    evaluator.add_event_handler(Events.COMPLETED, as_floats)


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Whatever runs inside leaves the process's random streams as it found them: torch's (CPU and the current
    CUDA device), NumPy's and Python's. Validation runs inside, so that training draws the same batches, frame
    roles, rays and dropout masks whether and how often it validates (a validation loader's iterator alone draws
    a seed from torch's stream)."""
    python, numpy = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []  # a CPU run leaves CUDA alone
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def attach_validation(trainer: Engine, evaluator: Engine, val_loader, every: int, at_start: bool = False) -> None:
    """Run the evaluator every ``every`` iterations and at the end of training (once per iteration);
    with ``at_start`` also before the first iteration of a fresh run (the untrained baseline). Validation leaves
    the random streams untouched (:func:`rng_untouched`): how often a run validates does not change its training."""

    def validate(engine: Engine) -> None:
        if getattr(engine.state, "last_validated", None) == engine.state.iteration:
            return
        engine.state.last_validated = engine.state.iteration
        with rng_untouched():
            evaluator.run(val_loader)
        if idist.get_rank() == 0:
            metrics = ", ".join(f"{k}={v:.4f}" for k, v in evaluator.state.metrics.items())
            log.info("validation at iteration %d: %s", engine.state.iteration, metrics)

    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=every), validate)
    trainer.add_event_handler(Events.COMPLETED, validate)
    if at_start:
        trainer.add_event_handler(Events.STARTED, lambda engine: engine.state.iteration == 0 and validate(engine))


def attach_best_checkpoint(
    evaluator: Engine, trainer: Engine, writer: CheckpointWriter, state_fn: StateFn, metric: str = "abs_rel"
) -> None:
    """Keep the model weights (and config) with the lowest validation ``metric``."""

    def save(engine: Engine) -> None:
        score = float(engine.state.metrics[metric])
        if score == score:  # NaN never counts as best
            state = state_fn()
            best = {"model": state["model"], "config": state["config"], "iteration": trainer.state.iteration}
            writer.save_best({**best, metric: score}, trainer.state.iteration, metric, score)

    evaluator.add_event_handler(Events.COMPLETED, save)


def attach_tensorboard(
    trainer: Engine,
    evaluator: Engine,
    optimizer: torch.optim.Optimizer,
    log_dir: str,
    log_every: int,
    config_yaml: str,
) -> TensorboardLogger:
    """Scalars: train loss terms and lr every ``log_every`` iterations, validation metrics per validation."""
    tb = TensorboardLogger(log_dir=log_dir)
    tb.writer.add_text("config", f"```\n{config_yaml}\n```", 0)
    every = Events.ITERATION_COMPLETED(every=log_every)
    tb.attach(trainer, OutputHandler(tag="train", output_transform=lambda out: out.scalars()), every)
    tb.attach(trainer, OptimizerParamsHandler(optimizer, param_name="lr"), every)
    tb.attach(
        evaluator,
        OutputHandler(tag="val", metric_names="all", global_step_transform=lambda *_: trainer.state.iteration),
        Events.COMPLETED,
    )
    trainer.add_event_handler(Events.COMPLETED, lambda _: tb.close())
    return tb


def bird_eye_profile_image(model: BTSModel, batch: Sample, res: tuple[int, int, int] = PROFILE_RES) -> Tensor:
    """Bird's-eye occupancy profile (3, Z, X) (official grid: 256 x 256) of the first scene through the model's
    ``eval_head``, in the levelled frame of view 0."""
    images, K_norm = batch.images[:1, :1], batch.K_norm[:1, :1]
    eye = torch.eye(4, device=images.device).expand(1, 1, 4, 4)
    with torch.no_grad():
        scene = model.encode(images, K_norm, eye)
        density = model.field.density_fn(scene, model.eval_head, PROFILE_CHUNK)
        profile = render_profile(density, level_to_cam(), res)  # (Z, X), 1 = free
    return colorize(1.0 - profile, 0.0, 1.0)


def attach_visualization(
    evaluator: Engine, trainer: Engine, tb: TensorboardLogger, model: BTSModel, profile: bool
) -> None:
    """Images of the first validation sample: input, rendered depth (magma) and reconstruction stacked, and
    optionally the bird's-eye occupancy profile."""

    def log_images(engine: Engine) -> None:
        out: EvalStepOutput = engine.state.output
        step = trainer.state.iteration
        image = (out.batch.images[0, 0].float() * 0.5 + 0.5).clamp(0, 1).cpu()  # (3, H, W)
        depth = colorize_depth(out.render.depth[0], model.z_near, model.z_far)  # (3, H, W)
        recon = out.render.rgb[0, 0].float().clamp(0, 1).cpu()  # (3, H, W), colours of the first render view
        tb.writer.add_image("val/input_depth_reconstruction", torch.cat([image, depth, recon], dim=1), step)
        if profile:
            tb.writer.add_image("val/bird_eye_profile", bird_eye_profile_image(model, out.batch), step)

    evaluator.add_event_handler(Events.ITERATION_COMPLETED(once=1), log_images)


def attach_progress_bar(trainer: Engine, target: int) -> None:
    """tqdm bar over the run's target iterations (not the epoch), with the loss and iterations per second."""
    bars: list[tqdm] = []

    def start(engine: Engine) -> None:
        bars.append(tqdm(total=target, initial=engine.state.iteration, desc="train", unit="it", dynamic_ncols=True))

    def advance(engine: Engine) -> None:
        bars[-1].update(1)
        bars[-1].set_postfix(loss=f"{engine.state.output.loss:.4g}", refresh=False)

    def close(engine: Engine, *args) -> None:
        if bars:
            bars.pop().close()

    trainer.add_event_handler(Events.STARTED, start)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, advance)
    for event in (Events.COMPLETED, Events.TERMINATE, Events.EXCEPTION_RAISED):
        trainer.add_event_handler(event, close)


class StopSignal:
    """SIGTERM or SIGINT asks the run to stop: the iteration in progress is finished, a checkpoint of it is written
    and the run ends non-zero (:func:`attach_stop_on_signal`). A second signal stops at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            self.restore()
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        self.signum = signum
        log.warning("%s received: finishing this iteration, then saving a checkpoint", signal.Signals(signum).name)


def attach_stop_on_signal(
    trainer: Engine, writer: CheckpointWriter | None, state_fn: StateFn, stop: StopSignal
) -> None:
    """After each iteration: if a stop was asked for (on any process), save a rolling checkpoint and end the run;
    ``engine.state.stop_signal`` then holds the signal number."""

    def check(engine: Engine) -> None:
        requested = torch.tensor(float(stop.signum or 0))
        if idist.get_world_size() > 1:  # every process stops after the same iteration
            requested = idist.all_reduce(requested.to(idist.device()), op="MAX").cpu()
        if requested.item() == 0:
            return
        engine.state.stop_signal = int(requested.item())
        if writer is not None:
            engine.state.stop_checkpoint = writer.save(state_fn(), engine.state.iteration)
        engine.terminate()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, check)


def attach_checkpoint_on_exception(trainer: Engine, writer: CheckpointWriter | None, state_fn: StateFn) -> None:
    """On an exception inside the loop (a bad frame, a failing handler, ...): save a checkpoint of the last
    completed iteration, then let the exception end the run. Attach before every other handler, so that
    "completed" means the optimizer step of that iteration was made."""
    completed = {"iteration": 0}
    trainer.add_event_handler(Events.STARTED, lambda e: completed.__setitem__("iteration", e.state.iteration))
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: completed.__setitem__("iteration", e.state.iteration)
    )

    def on_exception(engine: Engine, error: BaseException) -> None:
        if writer is not None and not isinstance(error, CheckpointWriteError | KeyboardInterrupt):
            state = state_fn()
            state["trainer"]["iteration"] = completed["iteration"]
            path = writer.save(state, completed["iteration"])
            log.error(
                "training stopped by %s at iteration %d; the last completed one is saved in %s "
                "(resume: trainer.resume_from=%s)",
                type(error).__name__,
                engine.state.iteration,
                path,
                path.parent,
            )
        raise error

    trainer.add_event_handler(Events.EXCEPTION_RAISED, on_exception)


def attach_replica_check(trainer: Engine, model: nn.Module) -> None:
    """At the end of a distributed run, verify that every process holds the same parameters."""

    def check(engine: Engine) -> None:
        with torch.no_grad():
            params = [p.detach().double() for p in model.parameters()]
            checksum = torch.stack([sum(p.sum() for p in params), sum((p * p).sum() for p in params)])
        gathered = idist.all_gather(checksum.to(idist.device())).reshape(-1, 2)
        if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
            raise RuntimeError(f"replicas diverged: parameter checksums per process {gathered.tolist()}")
        log.info("parameters identical on all %d processes", idist.get_world_size())

    trainer.add_event_handler(Events.COMPLETED, check)
