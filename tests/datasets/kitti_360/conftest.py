"""Fixtures: a tiny KITTI-360 copy in the real formats (see world.py)."""

import shutil

import pytest

from tests.datasets.kitti_360.world import write_world


@pytest.fixture(scope="session")
def _world_template(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("kitti360_template"))


@pytest.fixture
def world(_world_template, tmp_path):
    """A fresh copy per test, so tests may break or extend it."""
    return shutil.copytree(_world_template, tmp_path / "KITTI-360")
