"""Shared fixtures: a tiny synthetic world in the real KITTI-360 / KITTI-Raw formats, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets.synthetic.generate import GeneratorConfig, generate


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Root with ``KITTI-360/`` (1 sequence, 40 frames) and ``KITTI-Raw/`` (1 drive, 25 frames), half-size images."""
    root = tmp_path_factory.mktemp("synthetic")
    config = GeneratorConfig(
        out=root, sequences=1, frames=40, raw_frames=25, workers=1, small=True, show_progress=False
    )
    generate(config)
    return root
