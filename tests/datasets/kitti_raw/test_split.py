"""Split-line parsing, including right-anchored lines, and the shipped split files."""

from pathlib import Path

import numpy as np
import pytest

from datasets.calibration import DatasetError
from datasets.kitti_raw.layout import pose_file, read_orbslam_poses, resolve_repo_path
from datasets.kitti_raw.split import SplitEntry, parse_split_line, read_split

SPLITS = Path(__file__).resolve().parents[3] / "datasets" / "kitti_raw" / "splits"


def test_l_and_r_lines_are_parsed_as_left_and_right():
    left = parse_split_line("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l")
    right = parse_split_line("2011_09_26/2011_09_26_drive_0022_sync 473 r")
    assert left == SplitEntry("2011_09_26/2011_09_26_drive_0002_sync", 69, False)
    assert right == SplitEntry("2011_09_26/2011_09_26_drive_0022_sync", 473, True)
    assert right.date == "2011_09_26"


@pytest.mark.parametrize(
    "line", ["2011_09_26/d 3", "2011_09_26/d 3 x", "2011_09_26/d three l", "drive_only 3 l", "2011_09_26/d -1 l"]
)
def test_malformed_lines_name_file_and_line(tmp_path, line):
    path = tmp_path / "split.txt"
    path.write_text(f"2011_09_26/d 1 l\n\n{line}\n")
    with pytest.raises(DatasetError, match=r"split\.txt:3:"):
        read_split(path)


def test_missing_final_newline_is_fine(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("2011_09_26/d 1 l\n2011_09_26/d 2 r")
    assert [e.frame_id for e in read_split(path)] == [1, 2]


def test_shipped_eigen_zhou_split_sizes():
    test = read_split(SPLITS / "eigen_zhou" / "test_files.txt")
    train = read_split(SPLITS / "eigen_zhou" / "train_files.txt")
    assert len(test) == 697 and not any(e.is_right for e in test)
    assert len(train) == 39_810
    assert sum(e.is_right for e in train) == 19_854  # right-anchored lines exist and are kept as right
    assert {e.date for e in train} <= {"2011_09_26", "2011_09_28", "2011_09_29", "2011_09_30", "2011_10_03"}


def test_shipped_pose_files_are_read_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pose_root = resolve_repo_path("datasets/kitti_raw/orb-slam_poses")
    poses = read_orbslam_poses(pose_file(pose_root, "2011_09_26/2011_09_26_drive_0001_sync"))
    assert poses.shape == (108, 4, 4)  # one pose per frame of the 108-frame drive
    assert np.allclose(poses[0], np.eye(4))
    rotations = poses[:, :3, :3]
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert resolve_repo_path("datasets/kitti_raw/splits/eigen/test_files.txt").is_file()


@pytest.mark.parametrize("split", ["eigen_zhou", "eigen", "tulsiani"])
def test_shipped_splits_only_use_posed_frames(split):
    pose_root = resolve_repo_path("datasets/kitti_raw/orb-slam_poses")
    last_frame = {}
    for path in (SPLITS / split).glob("*_files.txt"):
        for entry in read_split(path):
            last_frame[entry.sequence] = max(entry.frame_id, last_frame.get(entry.sequence, 0))
    for sequence, frame in last_frame.items():
        lines = pose_file(pose_root, sequence).read_text().splitlines()
        assert frame < len(lines), (split, sequence)
