"""KITTI-360 split files (REFERENCE 6.4): one ``<sequence> <frame_number> <l|r>`` per line."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from datasets.calibration import DatasetError, require_file

SPLITS_DIR = Path(__file__).parent / "splits"


class SplitEntry(NamedTuple):
    sequence: str
    frame_id: int  # real frame number (the image file name)
    is_right: bool  # "r": the sample is anchored on the right camera


def read_split(path: Path) -> list[SplitEntry]:
    """Parse a split file. Blank lines are skipped; anything else malformed raises with file:line."""
    path = require_file(path, "Split files ship with the project under datasets/kitti_360/splits/.")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in ("l", "r") or not parts[1].isdigit():
            raise DatasetError(f"{path}:{number}: expected '<sequence> <frame> <l|r>', got {line.strip()[:80]!r}")
        entries.append(SplitEntry(parts[0], int(parts[1]), parts[2] == "r"))
    return entries
