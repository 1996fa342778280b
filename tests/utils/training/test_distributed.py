"""Two CPU processes (gloo) train in lock-step: after the run both replicas hold identical weights."""

from __future__ import annotations

from pathlib import Path

import ignite.distributed as idist
import torch
from omegaconf import DictConfig

from tests.builders import tiny_config
from utils.checkpoints import rolling_checkpoints
from utils.training.train import resolve_backend, training


def _replica(local_rank: int, cfg: DictConfig, out: Path) -> None:
    result = training(local_rank, cfg, out / "run")
    params = {k: v.detach().cpu() for k, v in result.model.named_parameters()}
    torch.save(params, out / f"rank{idist.get_rank()}_of_{idist.get_world_size()}.pt")


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    cfg = tiny_config(tmp_path / "run", "trainer.max_iters=2", "trainer.batch_size=2", "trainer.nproc_per_node=2")
    assert resolve_backend(cfg.trainer) == ("nccl" if torch.cuda.is_available() else "gloo")
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(_replica, cfg, tmp_path)
    rank0 = torch.load(tmp_path / "rank0_of_2.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1_of_2.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert [p.name for p in rolling_checkpoints(tmp_path / "run")] == ["training_checkpoint_2.pt"]  # rank 0 only
