"""The train step and the validation step; everything around them is a handler (utils/training/handlers.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from torch import Tensor, nn

from datasets.sample import Sample
from models.bts import BTSModel, BTSOutput, StepChoices
from models.losses import LossConfig, LossTerms, training_loss
from models.rendering import ImageRender
from utils.metrics import depth_metrics, resize_to
from utils.training.checkpoints import unwrap


@dataclass
class TrainStepOutput:
    """Scalars of one iteration. ``finite`` is False when the loss was NaN/inf on any process (no update made)."""

    loss: float
    photometric: float
    smoothness: float
    invalid_ratio: float  # share of rays the weight-guided mask dropped
    finite: bool
    kd: float | None = None  # the density distillation term (KDBTS), None when it is off

    def scalars(self) -> dict[str, float]:
        scalars = {
            "loss": self.loss,
            "photometric": self.photometric,
            "smoothness": self.smoothness,
            "invalid_ratio": self.invalid_ratio,
        }
        if self.kd is not None:
            scalars["kd"] = self.kd
        return scalars


@dataclass
class StepResult:
    """Everything one optimisation step produced: the forward pass, the loss terms (with their graph, whose
    gradients now sit in the parameters' ``.grad``) and the scalars the engine logs."""

    output: BTSOutput
    terms: LossTerms
    scalars: TrainStepOutput


@dataclass
class EvalStepOutput:
    """Per-image depth metrics (name -> (B',), images without ground truth left out) and the rendering."""

    metrics: dict[str, Tensor]
    render: ImageRender
    batch: Sample


@functools.cache
def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 convolutions (oneDNN on AVX-512 BF16 / AMX): elsewhere bf16 on the CPU is
    emulated and slower than float32. (torch exposes the check only as a private op; a build without it says no.)"""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check is not None and torch.backends.mkldnn.is_available() and check())


def bf16_applies(device: torch.device, bf16: bool) -> bool:
    """Whether ``bf16=True`` takes effect on ``device``: always on CUDA, on a CPU with native bf16 only."""
    return bf16 and (device.type == "cuda" or (device.type == "cpu" and cpu_bf16_supported()))


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast when asked and it pays (:func:`bf16_applies`); a disabled context otherwise (float32).

    The model switches autocast off around its geometry, sampling and compositing, so only the image encoder's
    convolutions run in bf16 (``models.bts``)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_applies(device, bf16))


def all_finite(loss: Tensor) -> bool:
    """Whether the loss is finite on every process (so that all of them skip, or all of them step)."""
    flag = torch.isfinite(loss.detach()).to(torch.float32)
    return bool(idist.all_reduce(flag, op="MIN").item() > 0)


class TrainStep:
    """One optimisation step: forward (autocast), loss in float32, backward, optimizer step.

    The engine calls it with a batch (``step(engine, batch)``) and the step draws its random choices;
    :meth:`run` also takes them explicitly (:class:`models.bts.StepChoices`), so a recorded step, such as the
    official golden training step, is replayed on exactly this path. A non-finite loss makes no update, so the
    weights (and the NaN checkpoint) stay those before this batch.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_cfg: LossConfig, device: torch.device, bf16: bool
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_cfg = loss_cfg
        self.device = device
        self.bf16 = bf16

    def run(self, batch: Sample, choices: StepChoices | None = None) -> StepResult:
        """Forward, loss, backward and (for a finite loss) an optimizer step on ``batch``."""
        self.model.train()
        batch = batch.to(self.device, non_blocking=True)
        with autocast(self.device, self.bf16):
            out = self.model(batch, choices)
        terms = training_loss(out.render, out.target, self.loss_cfg)
        finite = all_finite(terms.total)
        if finite:
            self.optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            self.optimizer.step()
        scalars = TrainStepOutput(
            loss=terms.total.item(),
            photometric=terms.photometric.item(),
            smoothness=terms.smoothness.item(),
            invalid_ratio=terms.invalid_ratio.item(),
            finite=finite,
            kd=None if terms.kd is None else terms.kd.item(),
        )
        return StepResult(output=out, terms=terms, scalars=scalars)

    def __call__(self, engine: Engine, batch: Sample) -> TrainStepOutput:
        """The engine's process function: only the scalars leave the step (the graph is freed)."""
        return self.run(batch).scalars


def make_eval_step(model: nn.Module, device: torch.device, bf16: bool) -> Callable[[Engine, Sample], EvalStepOutput]:
    """Full-image z-depth of view 0 against ``batch.depth`` (lidar, > 0 where measured)."""
    bts: BTSModel = unwrap(model)

    @torch.no_grad()
    def eval_step(engine: Engine, batch: Sample) -> EvalStepOutput:
        model.eval()
        batch = batch.to(device, non_blocking=True)
        if batch.depth is None:
            raise ValueError("validation samples carry no depth ground truth; build the val dataset with return_depth")
        with autocast(device, bf16):
            render = bts.render_view(batch, view_id=0)  # the model's eval_head and eval_encoder_ids
        gt = batch.depth[:, 0].float()  # (B, H_gt, W_gt)
        metrics = depth_metrics(resize_to(render.depth, tuple(gt.shape[-2:])), gt)
        has_gt = (gt > 0).flatten(1).any(dim=1)  # (B,)
        return EvalStepOutput(metrics={k: v[has_gt] for k, v in metrics.items()}, render=render, batch=batch)

    return eval_step
