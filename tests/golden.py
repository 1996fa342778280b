"""The golden fixtures of the official implementation shipped in ``tests/fixtures/official/`` (see its README).

``official_checkpoint(name)`` gives the path of an official-format checkpoint; ``mvbts_r18.pt`` is rebuilt once
per process from the BTS file it shares its encoder with and the tensors it adds, and checked against the
content digest of the original. ``load_io`` / ``load_step`` give the arrays of a forward-pass / training-step
fixture. A missing file fails the test (never skips it).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

OFFICIAL_DIR = Path(__file__).resolve().parent / "fixtures" / "official"


def official_path(name: str) -> Path:
    """A file of ``tests/fixtures/official/`` as shipped."""
    path = OFFICIAL_DIR / name
    assert path.is_file(), f"golden fixture {path} is missing from the repository (see {OFFICIAL_DIR / 'README.md'})"
    return path


def _manifest() -> dict:
    return json.loads(official_path("manifest.json").read_text())


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every key, dtype, shape and the raw bytes, in key order (independent of the zip container)."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key].contiguous().reshape(-1)
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()


@functools.cache
def _rebuilt_mvbts() -> Path:
    bts = torch.load(official_path("bts_r18.pt"), map_location="cpu", weights_only=True)["model"]
    extra = torch.load(official_path("mvbts_r18_extra.pt"), map_location="cpu", weights_only=True)
    state = {**{k: bts[k] for k in extra["shared_with_bts_r18"]}, **extra["model"]}
    expected = _manifest()["mvbts_r18_state_digest"]
    assert state_digest(state) == expected, "the rebuilt mvbts_r18.pt does not match the original's content digest"
    folder = Path(tempfile.mkdtemp(prefix="kdbts_golden_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mvbts_r18.pt"
    torch.save({"model": state}, folder / "mvbts_r18.pt.tmp")
    os.replace(folder / "mvbts_r18.pt.tmp", path)
    return path


def official_checkpoint(name: str) -> Path:
    """Path of the official-format checkpoint ``bts_r18.pt`` or ``mvbts_r18.pt`` (synthetic weights)."""
    if name == "bts_r18.pt":
        return official_path(name)
    if name == "mvbts_r18.pt":
        return _rebuilt_mvbts()
    raise ValueError(f"no official checkpoint fixture {name!r}; expected bts_r18.pt or mvbts_r18.pt")


def load_io(name: str) -> dict[str, np.ndarray]:
    """All arrays of a forward-pass fixture (``bts_r18_io.npz`` or ``mvbts_r18_io.npz``)."""
    with np.load(official_path(name)) as data:
        return {key: data[key] for key in data.files}


def load_step(name: str) -> dict[str, np.ndarray]:
    """All arrays of a training-step fixture (``bts_r18_step.npz`` / ``mvbts_kd_r18_step.npz``) and its inputs."""
    return {**load_io("step_inputs.npz"), **load_io(name)}
