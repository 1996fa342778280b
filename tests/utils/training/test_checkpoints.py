"""Checkpoint files: atomic writes, retention, and choosing the newest complete one to resume from."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import CheckpointError
from utils import checkpoints as CK
from utils.training import checkpoints as C


def _state(iteration: int) -> dict:
    return {
        "model": {"w": torch.full((4,), float(iteration))},
        "optimizer": {"state": {}, "param_groups": []},
        "lr_scheduler": {"last_epoch": iteration},
        "trainer": {"iteration": iteration, "epoch_length": 10, "max_epochs": 5},
        "config": "trainer: {}\n",
    }


def test_rolling_checkpoints_keep_the_newest_n(tmp_path):
    writer = C.CheckpointWriter(tmp_path, n_saved=2, n_saved_best=1)
    for it in (2, 4, 6, 10):
        writer.save(_state(it), it)
    assert [p.name for p in CK.rolling_checkpoints(tmp_path)] == [
        "training_checkpoint_10.pt",
        "training_checkpoint_6.pt",
    ]
    assert not list(tmp_path.glob("*.tmp"))


def test_best_checkpoints_keep_the_lowest_scores(tmp_path):
    writer = C.CheckpointWriter(tmp_path, n_saved=2, n_saved_best=2)
    for it, score in ((2, 0.5), (4, 0.3), (6, 0.4), (8, 0.6)):
        writer.save_best(_state(it), it, "abs_rel", score)
    assert sorted(p.name for p in tmp_path.glob("best_*.pt")) == [
        "best_checkpoint_4_abs_rel_0.3000.pt",
        "best_checkpoint_6_abs_rel_0.4000.pt",
    ]


def test_a_crash_during_a_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "training_checkpoint_2.pt"
    C.atomic_save(_state(2), path)

    def crashing_save(obj, f):
        f.write(b"PK\x03\x04 half of a checkpoint")
        raise KeyboardInterrupt  # the process dies in the middle of torch.save

    monkeypatch.setattr(C.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        C.atomic_save(_state(4), path)
    monkeypatch.undo()
    assert CK.read_checkpoint(path)["trainer"]["iteration"] == 2  # the good file was never touched
    assert (tmp_path / "training_checkpoint_2.pt.tmp").exists()
    C.CheckpointWriter(tmp_path, n_saved=2, n_saved_best=1)  # a new session clears the leftover
    assert not (tmp_path / "training_checkpoint_2.pt.tmp").exists()


def test_resume_from_a_directory_picks_the_newest_complete_checkpoint(tmp_path):
    for it in (2, 4):
        C.atomic_save(_state(it), tmp_path / f"training_checkpoint_{it}.pt")
    good = (tmp_path / "training_checkpoint_4.pt").read_bytes()
    (tmp_path / "training_checkpoint_6.pt.tmp").write_bytes(good[: len(good) // 2])  # interrupted write
    (tmp_path / "training_checkpoint_8.pt").write_bytes(good[: len(good) // 3])  # truncated by a plain copy
    torch.save({"model": {}}, tmp_path / "training_checkpoint_10.pt")  # not a training checkpoint
    (tmp_path / "best_checkpoint_12_abs_rel_0.1000.pt").write_bytes(good)  # best files are not resumed from
    path, data = CK.find_resume_checkpoint(tmp_path)
    assert path.name == "training_checkpoint_4.pt" and data["trainer"]["iteration"] == 4


def test_resume_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        CK.find_resume_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no complete"):
        CK.find_resume_checkpoint(tmp_path)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        CK.find_resume_checkpoint(tmp_path / "broken.pt")


def test_checkpoints_load_with_weights_only(tmp_path):
    # Only tensors, numbers, strings and containers are stored, so weights_only loading accepts them.
    C.atomic_save(_state(2), tmp_path / "training_checkpoint_2.pt")
    data = torch.load(tmp_path / "training_checkpoint_2.pt", weights_only=True)
    assert data["config"].startswith("trainer")
