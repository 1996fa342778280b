"""The official split files parse, and malformed lines name the file and line."""

import pytest

from datasets.calibration import DatasetError
from datasets.kitti_360.splits import SPLITS_DIR, read_split


def test_official_test_split_is_446_left_anchored_frames():
    entries = read_split(SPLITS_DIR / "seg" / "test_files.txt")
    assert len(entries) == 446
    assert all(not e.is_right for e in entries)
    assert entries[0] == ("2013_05_28_drive_0000_sync", 386, False)


def test_official_train_split_has_as_many_right_as_left_lines():
    entries = read_split(SPLITS_DIR / "seg" / "train_files.txt")
    assert len(entries) == 98008 and sum(e.is_right for e in entries) == 49004


def test_malformed_split_line(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("2013_05_28_drive_0000_sync 0000000001 l\n\n2013_05_28_drive_0000_sync 12 x\n")
    with pytest.raises(DatasetError, match=r"split\.txt:3: expected '<sequence> <frame> <l\|r>'"):
        read_split(path)
