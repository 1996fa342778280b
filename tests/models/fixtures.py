"""Paths of the golden reference-model fixtures (``shared/`` beside the repository root)."""

from pathlib import Path

import numpy as np

REFERENCE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "reference_model"


def fixture_path(name: str) -> Path:
    """Path of a reference fixture file; fails (never skips) with a clear message when it is absent."""
    path = REFERENCE_DIR / name
    assert path.is_file(), (
        f"reference fixture {path.resolve()} is missing: the model tests need the golden outputs of the official "
        f"code in shared/fixtures/reference_model/ beside the repository root (see its README.md)"
    )
    return path


def load_io(name: str) -> dict[str, np.ndarray]:
    """All arrays of a reference ``*_io.npz`` file."""
    with np.load(fixture_path(name)) as data:
        return {key: data[key] for key in data.files}
