"""The KITTI-Raw folder layout, drive discovery and ORB-SLAM3 pose files (REFERENCE 6.5).

```
<data_path>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
<data_path>/<date>/<date>_drive_XXXX_sync/image_02/data/<%010d>.jpg|png   (left colour)
<data_path>/<date>/<date>_drive_XXXX_sync/image_03/data/<%010d>.jpg|png   (right colour)
<data_path>/<date>/<date>_drive_XXXX_sync/velodyne_points/data/<%010d>.bin
<pose_path>/<date>/<date>_drive_XXXX_sync.txt   (one line per frame: row-major 3x4 T_world<-cam0)
```
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.calibration import DatasetError, read_matrix_rows, require_dir

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".png")
CAMERA_FOLDERS = {False: "image_02", True: "image_03"}
REPO_ROOT = Path(__file__).resolve().parents[2]

DATA_HINT = (
    "Download the KITTI raw data 'synced+rectified' zips of the drives you need and the per-date calibration "
    "zips from https://www.cvlibs.net/datasets/kitti/raw_data.php and extract them into data_path "
    "(<date>/<date>_drive_XXXX_sync/image_02/data/...). Converting the PNG images to JPG (the Monodepth2 "
    "convention) is optional: both .jpg and .png are read."
)
POSE_HINT = (
    "No ORB-SLAM3 pose file for this drive. The campus/person drives are intentionally absent upstream "
    "(stationary, not used for training; BehindTheScenes issue #20). Use a split without this drive, or "
    "provide poses at this path: one line per frame, 12 floats = row-major 3x4 T_world<-cam0."
)


@dataclass(frozen=True)
class Drive:
    """One validated drive: where it is, how many frames, which image suffix, its cam0 trajectory."""

    sequence: str  # "<date>/<drive>"
    path: Path
    num_frames: int
    image_suffix: str  # ".jpg" or ".png" (the suffix of the first image; the other is tried too)
    cam0_to_world: np.ndarray  # (N, 4, 4) float64

    def image_path(self, is_right: bool, frame: int) -> Path:
        """Path of a colour image; ``.jpg`` and ``.png`` are both accepted. Missing: DatasetError."""
        folder = self.path / CAMERA_FOLDERS[is_right] / "data"
        first = folder / f"{frame:010d}{self.image_suffix}"
        if first.is_file():
            return first
        for suffix in IMAGE_EXTENSIONS:
            candidate = folder / f"{frame:010d}{suffix}"
            if candidate.is_file():
                return candidate
        raise DatasetError(f"Missing file: {first} (or {first.with_suffix('.png').name})\n{DATA_HINT}")

    def velodyne_path(self, frame: int) -> Path:
        return self.path / "velodyne_points" / "data" / f"{frame:010d}.bin"


def resolve_repo_path(path: str | Path) -> Path:
    """``path`` as given, or, if relative and absent from the working directory, under the repository.

    The shipped poses and splits are then found whatever the working directory is.
    """
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


def pose_file(pose_root: Path, sequence: str) -> Path:
    return pose_root / f"{sequence}.txt"


def read_orbslam_poses(path: Path) -> np.ndarray:
    """ORB-SLAM3 trajectory file -> (N, 4, 4) float64 ``T_world<-cam0`` (missing file: DatasetError)."""
    _, rows = read_matrix_rows(path, 12, POSE_HINT)
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def list_images(folder: Path) -> tuple[int, str]:
    """Number of frames in an ``image_0x/data`` folder and the suffix of its first image."""
    require_dir(folder, DATA_HINT)
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise DatasetError(f"No .jpg/.png images in {folder}\n{DATA_HINT}")
    return len({Path(n).stem for n in names}), Path(names[0]).suffix


def open_drive(data_path: Path, pose_root: Path, sequence: str, need_right: bool) -> Drive:
    """Check a drive's folders, image counts and pose file length; return it with its poses loaded."""
    date, _ = sequence.split("/")
    require_dir(data_path / date, DATA_HINT)
    drive_dir = require_dir(data_path / sequence, DATA_HINT)
    num_frames, suffix = list_images(drive_dir / CAMERA_FOLDERS[False] / "data")
    if need_right:
        right_dir = drive_dir / CAMERA_FOLDERS[True] / "data"
        num_right, _ = list_images(right_dir)
        if num_right != num_frames:
            raise DatasetError(
                f"{right_dir} has {num_right} images but image_02/data has {num_frames}: incomplete extraction?"
            )
    poses = read_orbslam_poses(pose_file(pose_root, sequence))
    if len(poses) != num_frames:
        raise DatasetError(
            f"{pose_file(pose_root, sequence)} has {len(poses)} poses but {drive_dir / 'image_02/data'} has "
            f"{num_frames} images (one pose per frame expected): incomplete extraction or wrong pose file?"
        )
    return Drive(sequence, drive_dir, num_frames, suffix, poses)


def discover_sequences(data_path: Path, pose_root: Path) -> list[str]:
    """Every ``<date>/<drive>`` under ``data_path`` that has an image_02 folder and a pose file, sorted."""
    sequences = []
    for date_dir in sorted(p for p in data_path.iterdir() if p.is_dir()):
        for drive_dir in sorted(p for p in date_dir.iterdir() if (p / CAMERA_FOLDERS[False]).is_dir()):
            sequence = f"{date_dir.name}/{drive_dir.name}"
            if pose_file(pose_root, sequence).is_file():
                sequences.append(sequence)
            else:
                log.info("Skipping %s: no pose file %s", sequence, pose_file(pose_root, sequence))
    if not sequences:
        raise DatasetError(f"No drive with both images and a pose file under {data_path} (poses: {pose_root})")
    return sequences
