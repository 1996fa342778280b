"""A run owns its directory, a resume keeps its configuration, and bad input loses nothing (fault injection)."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datasets.calibration import DatasetError
from models.checkpoint import CheckpointError
from tests.builders import tiny_config, tiny_overrides
from utils.checkpoints import read_checkpoint, rolling_checkpoints
from utils.config import CONFIG_DIR, compose_config
from utils.training import checkpoints as writing
from utils.training.data import BAD_FRAMES
from utils.training.run_dir import (
    MANIFEST,
    ResumeConfigError,
    RunDirectoryError,
    claim_run_directory,
    read_manifest,
    release_run_directory,
)
from utils.training.train import select_device, train, training

REPO = CONFIG_DIR.parent
STARTUP_TIMEOUT_S = 240


def _adam_steps(checkpoint: dict) -> int:
    return int(max(float(s["step"]) for s in checkpoint["optimizer"]["state"].values()))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("owned") / "run"
    training(0, tiny_config(out, "trainer.max_iters=2"), out)
    return out


# --- one directory, one run -------------------------------------------------------------------------------------


def test_a_run_writes_its_manifest_and_its_checkpoints_carry_its_id(first_run):
    manifest = read_manifest(first_run)
    assert manifest is not None and len(manifest.run_id) == 12 and manifest.name == "bts_synthetic"
    assert len(manifest.starts) == 1 and manifest.started == manifest.starts[0]
    assert read_checkpoint(first_run / "training_checkpoint_2.pt")["run_id"] == manifest.run_id


def test_a_second_fresh_run_in_the_same_directory_is_refused_and_touches_nothing(first_run):
    before = {p.name: p.stat().st_mtime_ns for p in first_run.iterdir()}
    owner = read_manifest(first_run)
    with pytest.raises(RunDirectoryError) as err:
        training(0, tiny_config(first_run, "trainer.max_iters=2"), first_run)
    message = str(err.value)
    assert owner.run_id in message and owner.started in message
    assert f"trainer.resume_from={first_run}" in message and "trainer.output_dir=" in message
    assert {p.name: p.stat().st_mtime_ns for p in first_run.iterdir()} == before


def test_a_directory_with_an_earlier_runs_files_but_no_manifest_is_refused(first_run, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "training_checkpoint_8.pt").write_bytes((first_run / "training_checkpoint_2.pt").read_bytes())
    with pytest.raises(RunDirectoryError, match="training_checkpoint_8.pt"):
        training(0, tiny_config(legacy), legacy)
    assert [p.name for p in legacy.iterdir()] == ["training_checkpoint_8.pt"]


def test_a_run_that_fails_before_its_first_checkpoint_gives_its_directory_back(tmp_path):
    """A wrong path is fixed and the same command runs: the failed start leaves no claim on the directory."""
    out = tmp_path / "retry"
    missing = tmp_path / "no_such_checkpoint.pt"
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*no_such_checkpoint.pt"):
        training(0, tiny_config(out, f"trainer.init_from={missing}", "trainer.max_iters=1"), out)
    assert read_manifest(out) is None
    assert training(0, tiny_config(out, "trainer.max_iters=1"), out).iteration == 1
    assert read_manifest(out) is not None and (out / "training_checkpoint_1.pt").is_file()


def test_only_a_fresh_run_without_checkpoints_is_released(tmp_path):
    manifest = claim_run_directory(tmp_path, "bts_synthetic", None)
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"")
    assert not release_run_directory(tmp_path, "another_run")  # not its own: left alone
    assert release_run_directory(tmp_path, manifest.run_id)
    assert list(tmp_path.iterdir()) == []

    manifest = claim_run_directory(tmp_path, "bts_synthetic", None)
    (tmp_path / "training_checkpoint_0.pt").write_bytes(b"")
    assert not release_run_directory(tmp_path, manifest.run_id)  # it has something to resume from
    assert read_manifest(tmp_path).run_id == manifest.run_id


def test_a_claim_without_checkpoints_is_refused_with_the_ways_out_that_exist(tmp_path):
    owner = claim_run_directory(tmp_path, "bts_synthetic", None)  # a run still starting, or killed while it did
    with pytest.raises(RunDirectoryError) as err:
        claim_run_directory(tmp_path, "bts_synthetic", None)
    message = str(err.value)
    assert owner.run_id in message and "saved no checkpoint yet" in message
    assert f"delete {tmp_path / MANIFEST}" in message and "trainer.output_dir=" in message
    assert "trainer.resume_from" not in message  # nothing to resume from

    legacy = tmp_path / "events_only"  # an earlier run without a manifest that logged but never saved
    legacy.mkdir()
    (legacy / "events.out.tfevents.1.host").write_bytes(b"")
    with pytest.raises(RunDirectoryError, match=r"events\.out\.tfevents\.1\.host.*delete its files in") as err:
        claim_run_directory(legacy, "bts_synthetic", None)
    assert MANIFEST not in str(err.value) and "trainer.resume_from" not in str(err.value)


def test_a_resumed_run_continues_the_same_run_in_its_directory(first_run, tmp_path):
    out = tmp_path / "continued"
    training(0, tiny_config(out, "trainer.max_iters=2"), out)
    run_id = read_manifest(out).run_id
    cfg = tiny_config(out, f"trainer.resume_from={out}", "trainer.max_iters=4")
    assert training(0, cfg, out, explicit=("trainer.max_iters",)).iteration == 4
    manifest = read_manifest(out)
    assert manifest.run_id == run_id and len(manifest.starts) == 2
    assert read_checkpoint(out / "training_checkpoint_4.pt")["run_id"] == run_id
    # Another run's checkpoint cannot be resumed into this directory.
    other = tiny_config(out, f"trainer.resume_from={first_run}", "trainer.max_iters=6")
    with pytest.raises(RunDirectoryError, match="belongs to run"):
        training(0, other, out, explicit=("trainer.max_iters",))


def _run_train_py(out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    overrides = [o for o in tiny_overrides(out, *extra) if not o.startswith("trainer.output_dir=")]
    return subprocess.run(
        [sys.executable, "train.py", "-cn", "train_synthetic_bts", *overrides, f"trainer.output_dir={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_hydra_writes_its_config_and_log_into_the_run_directory(tmp_path):
    out = tmp_path / "cli"
    done = _run_train_py(out, "trainer.max_iters=1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / MANIFEST).is_file() and (out / "train.log").is_file()
    assert len(list((out / ".hydra").glob("*/config.yaml"))) == 1  # .hydra/<start time>/config.yaml
    assert not (REPO / "outputs" / "debug").exists() or not any((REPO / "outputs" / "debug").rglob(MANIFEST))
    assert "[1/1]" in done.stderr or "1/1" in done.stderr  # the bar counts the run's target, not the epoch


def test_a_multirun_sweep_gives_every_job_its_own_run(tmp_path):
    out = tmp_path / "sweep"
    overrides = [o for o in tiny_overrides(out, "trainer.max_iters=1") if not o.startswith("trainer.output_dir=")]
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "-cn", "train_synthetic_bts", *overrides]
        + [f"trainer.output_dir={out}", "trainer.seed=0,1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ids = set()
    for job in ("job0", "job1"):
        assert (out / job / "training_checkpoint_1.pt").is_file(), sorted(p.name for p in out.rglob("*"))
        ids.add(read_manifest(out / job).run_id)
        assert len(list((out / job / ".hydra").glob("*/config.yaml"))) == 1
    assert len(ids) == 2 and not rolling_checkpoints(out)


# --- resuming keeps the configuration -----------------------------------------------------------------------


def test_resume_with_a_changed_model_key_is_an_error_listing_it(first_run, tmp_path):
    cfg = tiny_config(
        tmp_path / "changed", f"trainer.resume_from={first_run}", "model.field.heads.single_view.d_hidden=32"
    )
    with pytest.raises(ResumeConfigError) as err:
        training(0, cfg, tmp_path / "changed")
    assert "model.field.heads.single_view.d_hidden: 64 -> 32" in str(err.value)
    assert not (tmp_path / "changed").exists()  # refused before anything was written


def test_resume_with_a_safe_key_warns_and_keeps_the_stored_target(first_run, tmp_path, caplog):
    cfg = tiny_config(tmp_path / "safe", f"trainer.resume_from={first_run}", "trainer.log_every=3")
    cfg.trainer.max_iters = 600  # what the plain config would say: not given on the command line
    with caplog.at_level(logging.INFO):
        result = training(0, cfg, tmp_path / "safe")
    assert result.iteration == 2  # the stored target (2) stands: nothing left to do
    assert "trainer.log_every changed: 1 -> 3" in caplog.text
    assert "keeping the run's trainer.max_iters=2" in caplog.text


def test_a_resume_composed_in_code_takes_the_target_of_its_overrides(first_run, tmp_path):
    """``train(cfg, overrides)`` (the demo and the study call it so): a new ``trainer.max_iters`` among the
    overrides extends the run, as it would on the command line."""
    run = tmp_path / "extended"
    shutil.copytree(first_run, run)
    overrides = tiny_overrides(run, f"trainer.resume_from={run}", "trainer.max_iters=3")
    train(compose_config("train_synthetic_bts", overrides), overrides)
    assert sorted(p.name for p in rolling_checkpoints(run))[-1:] == ["training_checkpoint_3.pt"]
    assert read_checkpoint(run / "training_checkpoint_3.pt")["trainer"]["iteration"] == 3


# --- signals and exceptions save the last completed iteration ------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_iteration_in_progress_and_a_resume_continues_exactly(tmp_path, signum):
    out = tmp_path / "signalled"
    overrides = [o for o in tiny_overrides(out, "trainer.max_iters=100000", "trainer.checkpoint_every=100000")]
    overrides = [o for o in overrides if not o.startswith("trainer.output_dir=")]
    overrides += ["trainer.validate_every=100000", f"trainer.output_dir={out}"]
    log = open(tmp_path / "train.log", "wb")  # noqa: SIM115 - written by the child until it ends
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-cn", "train_synthetic_bts", *overrides], cwd=REPO, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "train:" not in (tmp_path / "train.log").read_text(errors="replace"):  # the bar: iterations run
            assert proc.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.2)
        time.sleep(2.0)
        os.kill(proc.pid, signum)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "train.log").read_text(errors="replace")
    assert proc.returncode == 128 + signum, text[-3000:]
    assert f"stopped by {signal.Signals(signum).name}" in text and "trainer.resume_from=" in text
    (saved,) = rolling_checkpoints(out)
    done = read_checkpoint(saved)["trainer"]["iteration"]
    assert done >= 1 and _adam_steps(read_checkpoint(saved)) == done
    assert not list(out.glob("*.tmp"))

    cfg = tiny_config(out, f"trainer.resume_from={out}", f"trainer.max_iters={done + 2}")
    result = training(0, cfg, out, explicit=("trainer.max_iters",))
    final = read_checkpoint(out / f"training_checkpoint_{done + 2}.pt")
    assert result.iteration == done + 2 and _adam_steps(final) == done + 2
    assert final["lr_scheduler"]["last_epoch"] == done + 2


def test_a_corrupt_frame_stops_the_run_naming_it_and_the_last_iteration_is_saved(tmp_path):
    out = tmp_path / "corrupt"
    cfg = tiny_config(out, "data.train.bad_indices=[3]", "trainer.max_iters=12", "trainer.checkpoint_every=100")
    with pytest.raises(DatasetError, match="tiny/0000000003.png"):
        training(0, cfg, out)
    (saved,) = rolling_checkpoints(out)
    checkpoint = read_checkpoint(saved)
    done = checkpoint["trainer"]["iteration"]
    assert saved.name == f"training_checkpoint_{done}.pt"
    assert done == 0 or _adam_steps(checkpoint) == done  # the state of the last completed iteration


def test_bad_frames_can_be_skipped_listed_and_counted(tmp_path):
    out = tmp_path / "skip"
    cfg = tiny_config(
        out, "data.train.bad_indices=[3]", "data.on_bad_frame=skip", "data.max_bad_share=0.5", "trainer.max_iters=12"
    )
    assert training(0, cfg, out).iteration == 12  # two epochs of 6: the bad frame came up twice
    lines = (out / BAD_FRAMES).read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("3\t") and "tiny/0000000003.png" in line for line in lines)


def test_too_many_bad_frames_stop_the_run(tmp_path):
    out = tmp_path / "broken"
    cfg = tiny_config(out, "data.train.bad_indices=[1,2,3]", "data.on_bad_frame=skip", "data.max_bad_share=0.3")
    with pytest.raises(DatasetError, match="more than data.max_bad_share=0.3"):
        training(0, cfg, out)


def test_an_unknown_bad_frame_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="data.on_bad_frame='ignore'"):
        training(0, tiny_config(tmp_path / "policy", "data.on_bad_frame=ignore"), tmp_path / "policy")


# --- a full disk leaves nothing partial ------------------------------------------------------------------------


def _full_disk(written: int):
    def save(obj, f, *args, **kwargs):
        f.write(b"x" * written)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_a_full_disk_leaves_no_partial_file_and_says_what_is_needed(tmp_path, monkeypatch):
    writer = writing.CheckpointWriter(tmp_path, n_saved=2, n_saved_best=1)
    state = {"model": {"w": torch.zeros(1024, 1024)}}  # 4 MB of tensors
    writer.save(state, 1)
    monkeypatch.setattr(writing.torch, "save", _full_disk(1000))
    with pytest.raises(writing.CheckpointWriteError) as err:
        writer.save(state, 2)
    message = str(err.value)
    assert f"no space left to write training_checkpoint_2.pt in {tmp_path}" in message
    assert "needs about 4 MB" in message and "MB are free" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_checkpoint_1.pt"]  # the good one stays


def test_a_full_disk_during_training_ends_with_the_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(writing.torch, "save", _full_disk(10))
    out = tmp_path / "full"
    with pytest.raises(writing.CheckpointWriteError) as err:
        training(0, tiny_config(out, "trainer.max_iters=2"), out)
    # the first checkpoint of the run (the best after the validation at the start) is the one that fails
    pattern = rf"no space left to write [\w.]+\.pt in {out}: .* trainer\.resume_from={out}"
    assert re.fullmatch(pattern, str(err.value), flags=re.DOTALL)
    assert not list(out.glob("*.pt")) and not list(out.glob("*.tmp"))


# --- smaller points ---------------------------------------------------------------------------------------------


def test_a_device_that_is_not_one_is_a_clear_error():
    with pytest.raises(ValueError, match="trainer.device='gpu' is not a device: use auto, cpu, cuda or cuda:N"):
        select_device("gpu")


def test_bf16_on_the_cpu_says_whether_it_is_used(tmp_path, caplog, monkeypatch):
    from utils.training import steps

    for native in (False, True):
        monkeypatch.setattr(steps, "cpu_bf16_supported", lambda native=native: native)
        caplog.clear()
        run = tmp_path / f"bf16_{native}"
        with caplog.at_level(logging.INFO):
            training(0, tiny_config(run, "trainer.bf16=true", "trainer.max_iters=1"), run)
        used = "the image encoder runs in bf16 on this CPU" in caplog.text
        refused = "this run on cpu computes in float32" in caplog.text
        assert (used, refused) == (native, not native)
        assert (run / "training_checkpoint_1.pt").is_file()  # it trains either way


def test_metrics_json_is_strict_json(tmp_path):
    from utils.evaluation.report import write_json

    write_json(tmp_path / "m.json", {"summary": {"a": float("nan"), "b": [1.0, float("inf")]}, "c": "x"})

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse) == {
        "summary": {"a": None, "b": [1.0, None]},
        "c": "x",
    }


def test_the_progress_bar_counts_the_run_target_not_the_epoch(tmp_path, capsys):
    """4 iterations of a run whose epoch is longer: the bar reads 4/4 (it read [4/epoch length] before)."""
    out = tmp_path / "bar"
    training(0, tiny_config(out, "trainer.max_iters=4"), out)
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    finals = [line for line in bar if line.startswith("train:")]
    assert finals and " 4/4 " in finals[-1]


def test_a_run_from_before_data_antialias_resumes_with_the_resizing_it_had():
    """Configs stored before the option lack its keys; they meant the official resizing (False): resuming with that
    is the same run, resuming with antialiasing changes the data and is refused, naming the key."""
    from omegaconf import OmegaConf

    from utils.config import compose_config
    from utils.training.run_dir import resume_config

    old = OmegaConf.to_container(compose_config("train_synthetic_bts", ["data.antialias=false"]), resolve=True)
    for section in (old["data"], old["data"]["train"], old["data"]["val"]["dataset"]):
        del section["antialias"]
    stored = OmegaConf.to_yaml(OmegaConf.create(old))
    resume_config(stored, compose_config("train_synthetic_bts", ["data.antialias=false"]))
    with pytest.raises(ResumeConfigError, match=r"data\.antialias: False -> True"):
        resume_config(stored, compose_config("train_synthetic_bts"))
