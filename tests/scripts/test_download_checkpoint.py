"""download_checkpoint.sh without a network: served from file:// URLs, and failing cleanly when offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from models.checkpoint import load_official_checkpoint
from tests.builders import BTS, KDBTS, NO_VIEW_DROPOUT, build_field
from tests.golden import official_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "download_checkpoint.sh"


def run(name: str, base_url: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BTS_CHECKPOINT_BASE_URL": base_url, "BTS_CHECKPOINT_OUT": str(out)}
    return subprocess.run(["bash", str(SCRIPT), name], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def server(tmp_path) -> Path:
    """A fake server tree with the official file names: real official-format checkpoints inside."""
    root = tmp_path / "server"
    (root / "kdbts").mkdir(parents=True)
    (root / "kitti-360").mkdir()
    with zipfile.ZipFile(root / "kdbts" / "kitti_360.zip", "w") as archive:
        archive.write(official_checkpoint("mvbts_r18.pt"), "kdbts/training_checkpoint_250000.pt")
        archive.write(official_checkpoint("mvbts_r18.pt"), "mvbts/training_checkpoint_200000.pt")
    (root / "kdbts" / "kitti_raw.zip").write_bytes(b"this is not a zip archive")
    shutil.copy(official_checkpoint("bts_r18.pt"), root / "kitti-360" / "training-checkpoint.pt")
    return root


def test_zip_is_unpacked_after_download_and_the_loader_reads_it(server, tmp_path):
    out = tmp_path / "out"
    result = run("kitti-360", server.as_uri(), out)
    assert result.returncode == 0, result.stderr
    kdbts = out / "kitti_360" / "kdbts" / "training_checkpoint_250000.pt"
    assert kdbts.is_file() and (out / "kitti_360" / "mvbts" / "training_checkpoint_200000.pt").is_file()
    assert str(kdbts) in result.stdout
    arch = load_official_checkpoint(build_field(KDBTS, NO_VIEW_DROPOUT), kdbts)
    assert arch.kind == "MVBTS + KDBTS student"
    assert not list(out.rglob("*.partial"))


def test_bts_checkpoint_lands_under_pretrained(server, tmp_path):
    out = tmp_path / "out"
    result = run("bts-kitti-360", server.as_uri(), out)
    assert result.returncode == 0, result.stderr
    path = out / "kitti_360" / "pretrained" / "training-checkpoint.pt"
    assert load_official_checkpoint(build_field(BTS), path).kind == "BTS"


def test_offline_fails_cleanly_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = run("kitti-360", "http://127.0.0.1:9", out)  # nothing listens on the discard port
    assert result.returncode == 1
    assert "could not download http://127.0.0.1:9/kdbts/kitti_360.zip" in result.stderr
    assert "Nothing was written" in result.stderr
    assert not out.exists()


def test_a_missing_file_on_the_server_fails_cleanly(server, tmp_path):
    out = tmp_path / "out"
    result = run("bts-kitti-raw", server.as_uri(), out)  # the fake server has no kitti/ folder
    assert result.returncode == 1 and "could not download" in result.stderr
    assert not out.exists()


def test_a_corrupt_archive_leaves_nothing_behind(server, tmp_path):
    out = tmp_path / "out"
    result = run("kitti-raw", server.as_uri(), out)
    assert result.returncode == 1 and "not a valid zip archive" in result.stderr
    assert not out.exists()


def test_unknown_name_prints_the_usage(tmp_path):
    result = run("kitti-361", "http://127.0.0.1:9", tmp_path / "out")
    assert result.returncode == 2
    assert "unknown checkpoint 'kitti-361'" in result.stderr and "bts-kitti-raw" in result.stdout
