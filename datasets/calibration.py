"""Readers for the plain-text calibration and pose files of KITTI / KITTI-360.

Errors name the file and the line, because a truncated download is the usual cause.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class DatasetError(RuntimeError):
    """A dataset file is missing or malformed; the message says which and what to do."""


def require_file(path: Path, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`DatasetError` naming it and ``hint``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Missing file: {path}\n{hint}")
    return path


def require_dir(path: Path, hint: str) -> Path:
    """Return ``path`` if it is a directory, else raise :class:`DatasetError`."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"Missing directory: {path}\n{hint}")
    return path


def read_key_values(path: Path, hint: str = "") -> dict[str, np.ndarray]:
    """Parse ``key: v1 v2 ...`` lines into float64 arrays.

    Blank lines are skipped. Lines whose values are not all numbers (e.g. ``calib_time:
    09-Jan-2012 13:57:47`` in KITTI-Raw) are kept out of the result. A line without ``:`` is
    an error naming the file and line number.
    """
    path = require_file(path, hint)
    result: dict[str, np.ndarray] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DatasetError(f"{path}:{number}: expected 'key: values', got {line.strip()[:80]!r}")
        key, _, rest = line.partition(":")
        try:
            result[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue
    return result


def expect_matrix(values: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    """Fetch ``key`` from a parsed calibration file and reshape it, or raise naming the file."""
    if key not in values:
        raise DatasetError(f"{path}: key {key!r} not found (keys present: {sorted(values)})")
    array = values[key]
    if array.size != shape[0] * shape[1]:
        raise DatasetError(f"{path}: {key!r} has {array.size} numbers, expected {shape[0] * shape[1]}")
    return array.reshape(shape)


def read_matrix_rows(path: Path, columns: int, hint: str = "", first_column_is_id: bool = False):
    """Read a whitespace table of floats (one row per line), e.g. ``poses.txt``.

    Returns ``(ids, rows)`` where ``ids`` is None unless ``first_column_is_id``.
    Malformed lines raise with file and line number.
    """
    path = require_file(path, hint)
    ids, rows = [], []
    expected = columns + (1 if first_column_is_id else 0)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != expected:
            raise DatasetError(f"{path}:{number}: expected {expected} numbers, found {len(parts)}")
        try:
            numbers = [float(p) for p in parts]
        except ValueError as error:
            raise DatasetError(f"{path}:{number}: not a number ({error})") from None
        if first_column_is_id:
            ids.append(int(numbers[0]))
            numbers = numbers[1:]
        rows.append(numbers)
    array = np.array(rows, dtype=np.float64).reshape(-1, columns)
    return (np.array(ids, dtype=np.int64) if first_column_is_id else None), array
