"""End-to-end training runs on tiny data: outputs, resume, init, strict loading, NaN handling."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from ignite.utils import manual_seed
from omegaconf import OmegaConf

from models.checkpoint import CheckpointError
from tests.builders import tiny_config
from utils.checkpoints import read_checkpoint, rolling_checkpoints
from utils.config import compose_config
from utils.training.handlers import StopSignal
from utils.training.train import setup_model, setup_optimization, train, training


def _events(directory: Path) -> list[Path]:
    return list(directory.glob("events.out.tfevents.*"))


def _adam_steps(checkpoint: dict) -> int:
    return int(max(float(s["step"]) for s in checkpoint["optimizer"]["state"].values()))


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A 4-iteration debug run (checkpoints at 2 and 4, validation at 0, 2 and 4)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(out))
    return out


def test_debug_run_writes_checkpoints_and_tensorboard(finished_run):
    assert [p.name for p in rolling_checkpoints(finished_run)] == [
        "training_checkpoint_4.pt",
        "training_checkpoint_2.pt",
    ]
    assert _events(finished_run)
    assert len(list(finished_run.glob("best_checkpoint_*_abs_rel_*.pt"))) == 1
    assert not list(finished_run.glob("*.tmp"))
    ckpt = read_checkpoint(finished_run / "training_checkpoint_4.pt")
    assert ckpt["trainer"]["iteration"] == 4
    assert ckpt["lr_scheduler"]["last_epoch"] == 4  # stepped per iteration
    assert _adam_steps(ckpt) == 4
    stored = OmegaConf.create(ckpt["config"])
    assert stored.model.field.encoder.resnet_layers == 18 and stored.trainer.max_iters == 4


def test_tensorboard_holds_scalars_and_images(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(finished_run), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/photometric", "train/smoothness", "lr/group_0", "val/abs_rel", "val/a1"} <= scalars
    # train_synthetic_bts also validates the untrained model (trainer.validate_at_start)
    assert [e.step for e in acc.Scalars("val/abs_rel")] == [0, 2, 4]
    assert acc.Tags()["images"] == ["val/input_depth_reconstruction"]


def test_resume_restores_everything_and_continues(finished_run, tmp_path):
    ckpt_path = finished_run / "training_checkpoint_2.pt"
    ckpt = read_checkpoint(ckpt_path)
    cfg = tiny_config(tmp_path / "resumed", f"trainer.resume_from={ckpt_path}", "trainer.max_iters=4")

    # The restored state equals the checkpoint's before any step is taken.
    from utils.training.checkpoints import restore_training_state
    from utils.training.train import setup_trainer

    device = torch.device("cpu")
    model = setup_model(cfg, device)
    optimizer, scheduler = setup_optimization(cfg.trainer, model)
    stop = StopSignal()
    trainer, _, tb = setup_trainer(cfg, model, optimizer, scheduler, [], device, tmp_path / "unused", "x", 4, stop)
    tb.close()
    restore_training_state(ckpt, model, optimizer, scheduler, trainer)
    assert _same_tensors(model.state_dict(), ckpt["model"])
    assert scheduler.state_dict() == ckpt["lr_scheduler"] and trainer.state.iteration == 2
    assert _same_tensors(optimizer.state_dict()["state"][0], ckpt["optimizer"]["state"][0])

    # And a resumed run takes only the missing iterations: Adam's step count continues from 2 to 4.
    result = training(0, cfg, tmp_path / "resumed", explicit=("trainer.max_iters",))
    assert result.iteration == 4
    final = read_checkpoint(tmp_path / "resumed" / "training_checkpoint_4.pt")
    assert _adam_steps(final) == 4 and final["lr_scheduler"]["last_epoch"] == 4
    assert not (tmp_path / "resumed" / "training_checkpoint_2.pt").exists()


def test_resume_from_a_run_directory_uses_its_newest_checkpoint(finished_run, tmp_path):
    cfg = tiny_config(tmp_path / "more", f"trainer.resume_from={finished_run}", "trainer.max_iters=5")
    result = training(0, cfg, tmp_path / "more", explicit=("trainer.max_iters",))  # a new target, given explicitly
    assert result.iteration == 5
    assert _adam_steps(read_checkpoint(tmp_path / "more" / "training_checkpoint_5.pt")) == 5


def test_resume_of_a_finished_run_does_nothing(finished_run, tmp_path, caplog):
    cfg = tiny_config(tmp_path / "again", f"trainer.resume_from={finished_run}")
    with caplog.at_level(logging.INFO):
        assert training(0, cfg, tmp_path / "again").iteration == 4
    assert "nothing to do" in caplog.text and not rolling_checkpoints(tmp_path / "again")


def test_init_from_loads_weights_only(finished_run, tmp_path):
    ckpt_path = finished_run / "training_checkpoint_4.pt"
    cfg = tiny_config(tmp_path / "init", f"trainer.init_from={ckpt_path}", "trainer.max_iters=2")
    model = setup_model(cfg, torch.device("cpu"))
    assert _same_tensors(model.state_dict(), read_checkpoint(ckpt_path)["model"])

    result = training(0, cfg, tmp_path / "init")
    assert result.iteration == 2  # a fresh schedule: iterations count from 0
    final = read_checkpoint(tmp_path / "init" / "training_checkpoint_2.pt")
    assert _adam_steps(final) == 2 and final["lr_scheduler"]["last_epoch"] == 2


def test_init_from_a_best_checkpoint(finished_run, tmp_path):
    best = next(finished_run.glob("best_checkpoint_*.pt"))
    cfg = tiny_config(tmp_path / "best", f"trainer.init_from={best}")
    model = setup_model(cfg, torch.device("cpu"))
    assert _same_tensors(model.state_dict(), read_checkpoint(best, required=("model",))["model"])


def test_a_mismatched_checkpoint_is_an_error_listing_keys(finished_run, tmp_path):
    ckpt = read_checkpoint(finished_run / "training_checkpoint_2.pt")
    ckpt["model"]["field.heads.extra.weight"] = torch.zeros(1)
    del ckpt["model"]["field.heads.single_view.mlp.output.bias"]
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    for key in ("init_from", "resume_from"):
        cfg = tiny_config(tmp_path / key, f"trainer.{key}={bad}")
        with pytest.raises(CheckpointError) as err:
            training(0, cfg, tmp_path / key)
        assert "field.heads.extra.weight" in str(err.value)
        assert "field.heads.single_view.mlp.output.bias" in str(err.value)


def test_a_different_architecture_is_an_error(finished_run, tmp_path):
    cfg = tiny_config(
        tmp_path / "r34",
        f"trainer.init_from={finished_run / 'training_checkpoint_2.pt'}",
        "model.field.encoder.resnet_layers=34",
    )
    with pytest.raises(CheckpointError, match="missing keys"):
        setup_model(cfg, torch.device("cpu"))


def test_resume_wins_over_init_from(finished_run, tmp_path, caplog):
    """A KD config carries init_from; resuming such a run must not need init_from=null."""
    ckpt = finished_run / "training_checkpoint_2.pt"
    cfg = tiny_config(tmp_path / "both", f"trainer.resume_from={ckpt}", f"trainer.init_from={ckpt}")
    with caplog.at_level(logging.INFO):
        result = training(0, cfg, tmp_path / "both")
    assert "trainer.init_from is not used" in caplog.text
    assert result.iteration == 4 and _adam_steps(read_checkpoint(tmp_path / "both" / "training_checkpoint_4.pt")) == 4


def test_nan_loss_saves_a_checkpoint_and_stops(tmp_path, caplog):
    cfg = tiny_config(tmp_path / "nan", "data.train.nan_images=true")
    manual_seed(cfg.trainer.seed)  # as training() does before building the model
    initial = {k: v.detach().clone() for k, v in setup_model(cfg, torch.device("cpu")).named_parameters()}
    with caplog.at_level(logging.ERROR):
        result = training(0, cfg, tmp_path / "nan")
    assert result.iteration == 1
    assert "non-finite loss at iteration 1" in caplog.text and "nan_checkpoint_1.pt" in caplog.text
    saved = read_checkpoint(tmp_path / "nan" / "nan_checkpoint_1.pt")
    # The parameters before the bad batch (no update was made); BatchNorm statistics did see the batch.
    assert _same_tensors({k: saved["model"][k] for k in initial}, initial)
    assert saved["optimizer"]["state"] == {}
    assert not rolling_checkpoints(tmp_path / "nan")  # a NaN state never enters the rolling set


def test_every_run_has_its_own_directory_and_hydra_writes_there():
    cfg = compose_config("train_kitti_360_bts", return_hydra_config=True)
    assert str(cfg.trainer.output_dir).startswith("outputs/bts_kitti_360/")  # name and start time
    assert cfg.hydra.run.dir == cfg.hydra.sweep.dir == cfg.trainer.output_dir
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "job${hydra.job.num}"


@pytest.mark.parametrize("resume_from", ["runs/a", "runs/a/training_checkpoint_20.pt"])
def test_a_resumed_run_goes_on_in_its_own_directory(resume_from):
    cfg = compose_config("train_kitti_360_bts", [f"trainer.resume_from={resume_from}"], return_hydra_config=True)
    assert cfg.trainer.output_dir == cfg.hydra.run.dir == "runs/a"
    moved = compose_config("train_kitti_360_bts", [f"trainer.resume_from={resume_from}", "trainer.output_dir=b"])
    assert moved.trainer.output_dir == "b"  # a multirun job gets its own subdirectory


def test_compile_option_compiles_only_the_encoder_in_place(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    plain = setup_model(tiny_config(tmp_path / "plain"), torch.device("cpu"))
    assert compiled == []
    model = setup_model(tiny_config(tmp_path / "compiled", "trainer.compile=true"), torch.device("cpu"))
    assert compiled == [model.field.encoder]
    assert list(model.state_dict()) == list(plain.state_dict())  # checkpoints keep their keys


@pytest.mark.parametrize("workers", [0, 1])
def test_how_often_a_run_validates_does_not_change_its_training(tmp_path, workers):
    """Validation leaves the random streams untouched: a run validated before its first and after every
    iteration ends with the same weights, bit for bit, as one validated only at its end (the study compares
    runs that validate at other intervals; before, the validation loader's iterator drew a seed from torch's
    stream and every later batch, ray and jitter changed)."""
    common = (f"trainer.num_workers={workers}", "trainer.max_iters=3", "trainer.checkpoint_every=3")
    often = tiny_config(tmp_path / "often", *common, "trainer.validate_every=1", "trainer.validate_at_start=true")
    once = tiny_config(tmp_path / "once", *common, "trainer.validate_every=1000", "trainer.validate_at_start=false")
    weights = []
    for cfg, out in ((often, tmp_path / "often"), (once, tmp_path / "once")):
        training(0, cfg, out)
        weights.append(read_checkpoint(out / "training_checkpoint_3.pt")["model"])
    assert _same_tensors(*weights)
