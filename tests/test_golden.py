"""The shipped golden fixtures are intact: every file matches the sha256 in ``manifest.json`` (a truncated clone,
a line-ending filter or a partial LFS checkout would otherwise show up as puzzling numerical failures)."""

import hashlib
import json

import torch

from tests.golden import OFFICIAL_DIR, official_checkpoint, official_path, state_digest


def test_every_shipped_fixture_matches_the_manifest():
    manifest = json.loads(official_path("manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in OFFICIAL_DIR.iterdir() if p.suffix in (".pt", ".npz")}
    for name, info in manifest["files"].items():
        data = official_path(name).read_bytes()
        assert len(data) == info["bytes"], name
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name


def test_the_checkpoints_hold_the_original_tensors():
    manifest = json.loads(official_path("manifest.json").read_text())
    for name in ("bts_r18", "mvbts_r18"):
        state = torch.load(official_checkpoint(f"{name}.pt"), map_location="cpu", weights_only=True)["model"]
        assert state_digest(state) == manifest[f"{name}_state_digest"], name
