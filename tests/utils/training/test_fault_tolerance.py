"""A training process killed with SIGKILL resumes from its newest complete checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.builders import tiny_config, tiny_overrides
from utils.checkpoints import read_checkpoint, rolling_checkpoints
from utils.config import CONFIG_DIR
from utils.training.train import training

REPO = CONFIG_DIR.parent

STARTUP_TIMEOUT_S = 240


def test_a_killed_run_resumes_from_its_newest_complete_checkpoint(tmp_path):
    out = tmp_path / "killed"
    overrides = tiny_overrides(
        out,
        "trainer.max_iters=1000",
        "trainer.checkpoint_every=1",
        "trainer.validate_every=1000",
    )
    log_file = open(tmp_path / "train.log", "wb")  # noqa: SIM115 - the child writes to it until it is killed
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-cn", "train_synthetic_bts", *overrides],
        cwd=REPO,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not rolling_checkpoints(out):
            assert proc.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.2)
        time.sleep(1.0)  # let it get into the next iteration (or the next checkpoint write)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        log_file.close()
    assert proc.returncode == -signal.SIGKILL

    newest = rolling_checkpoints(out)[0]
    done = read_checkpoint(newest)["trainer"]["iteration"]
    cfg = tiny_config(tmp_path / "resumed", f"trainer.resume_from={out}", f"trainer.max_iters={done + 1}")
    result = training(0, cfg, tmp_path / "resumed", explicit=("trainer.max_iters",))
    assert result.iteration == done + 1
    final = read_checkpoint(tmp_path / "resumed" / f"training_checkpoint_{done + 1}.pt")
    assert max(float(s["step"]) for s in final["optimizer"]["state"].values()) == done + 1
