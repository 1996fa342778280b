"""KITTI-Raw split files: one sample per line, ``<date>/<drive> <frame> <l|r>``.

``l`` anchors the sample on the left colour camera (image_02), ``r`` on the right one (image_03).
The official loader reads ``r`` lines as left-anchored (REFERENCE 10.3); here they are right-anchored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets.calibration import DatasetError, require_file

SIDES = {"l": False, "r": True}


@dataclass(frozen=True)
class SplitEntry:
    """One split line: the drive (``<date>/<drive>``), the anchor frame and the anchor camera."""

    sequence: str
    frame_id: int
    is_right: bool

    @property
    def date(self) -> str:
        return self.sequence.split("/")[0]


def parse_split_line(line: str, where: str = "<split>") -> SplitEntry:
    """Parse ``<date>/<drive> <frame> <l|r>``; ``where`` (``file:line``) prefixes error messages."""
    parts = line.split()
    if len(parts) != 3:
        raise DatasetError(f"{where}: expected '<date>/<drive> <frame> <l|r>', got {line.strip()[:80]!r}")
    sequence, frame, side = parts
    if len(Path(sequence).parts) != 2:
        raise DatasetError(f"{where}: sequence must be '<date>/<drive>', got {sequence!r}")
    if side not in SIDES:
        raise DatasetError(f"{where}: side must be 'l' or 'r', got {side!r}")
    try:
        frame_id = int(frame)
    except ValueError:
        raise DatasetError(f"{where}: frame {frame!r} is not an integer") from None
    if frame_id < 0:
        raise DatasetError(f"{where}: negative frame {frame_id}")
    return SplitEntry(sequence, frame_id, SIDES[side])


def read_split(path: Path) -> list[SplitEntry]:
    """Read a split file (blank lines skipped; a missing final newline is fine)."""
    path = require_file(path, "Split files live in datasets/kitti_raw/splits/<split>/{train,val,test}_files.txt.")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            entries.append(parse_split_line(line, f"{path}:{number}"))
    return entries
