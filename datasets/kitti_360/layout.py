"""Where every KITTI-360 file lives on disk (REFERENCE 6.1), and what to download when it is missing.

```
<data_path>/calibration/{calib_cam_to_pose.txt, calib_cam_to_velo.txt, perspective.txt, image_02.yaml, image_03.yaml}
<pose_path>/<seq>/poses.txt                                  (pose_path defaults to <data_path>/data_poses)
<data_path>/data_2d_raw/<seq>/image_00|01/data_rect/<%010d>.png      rectified perspective left / right
<data_path>/data_2d_raw/<seq>/image_02|03/data_rgb/<%010d>.png       fisheye left / right
<data_path>/data_2d_raw/<seq>/image_00|01/data_192x640/               preprocessed perspective (cache)
<data_path>/data_2d_raw/<seq>/image_02|03/data_192x640_0x-15/         preprocessed fisheye (cache)
<data_path>/data_3d_raw/<seq>/velodyne_points/data/<%010d>.bin        velodyne scans
```
"""

from __future__ import annotations

from pathlib import Path

PERSPECTIVE_CAMERAS = ("00", "01")
FISHEYE_CAMERAS = ("02", "03")

HINT_CALIBRATION = "Download the calibration archive (calibration.zip) from the KITTI-360 website."
HINT_POSES = "Download data_poses from the KITTI-360 website."
HINT_IMAGES = "Download data_2d_raw (perspective and fisheye images) from the KITTI-360 website."
HINT_SCANS = "Download data_3d_raw (velodyne scans) from the KITTI-360 website."


def preprocess_hint(
    data_path: Path,
    image_size: tuple[int, int],
    rotation: tuple[float, float],
    model: str = "official",
    antialias: bool = False,
) -> str:
    """The command that fills the cache for this configuration."""
    return (
        f"Run: python -m datasets.kitti_360.preprocess -d {data_path} --size {image_size[0]} {image_size[1]} "
        f"--fisheye-rotation {rotation[0]:g} {rotation[1]:g}"
        + ("" if model == "official" else f" --fisheye-model {model}")
        + (" --antialias" if antialias else "")
    )


def frame_name(frame_id: int, suffix: str = ".png") -> str:
    return f"{frame_id:010d}{suffix}"


ANTIALIAS_SUFFIX = "_antialiased"


def perspective_cache_folder(image_size: tuple[int, int], antialias: bool = False) -> str:
    """``data_192x640`` for ``image_size = (192, 640)`` (official name, so existing caches work); antialiased
    resizing gets an ``_antialiased`` suffix."""
    return f"data_{image_size[0]}x{image_size[1]}" + (ANTIALIAS_SUFFIX if antialias else "")


def fisheye_cache_folder(
    image_size: tuple[int, int], rotation: tuple[float, float], model: str = "official", antialias: bool = False
) -> str:
    """``data_192x640_0x-15`` for ``(192, 640)`` and rotation ``(0, -15)`` (yaw x pitch).

    The official resampling keeps the official name; the exact MEI model gets an ``_exact`` suffix, antialiased
    resampling ``_antialiased``.
    """
    suffix = ("" if model == "official" else f"_{model}") + (ANTIALIAS_SUFFIX if antialias else "")
    return f"data_{image_size[0]}x{image_size[1]}_{rotation[0]:g}x{rotation[1]:g}{suffix}"


class Kitti360Layout:
    """Paths of one KITTI-360 copy."""

    def __init__(self, data_path: Path, pose_path: Path | None = None):
        self.root = Path(data_path)
        self.pose_root = Path(pose_path) if pose_path is not None else self.root / "data_poses"
        self.calibration = self.root / "calibration"
        self.images_root = self.root / "data_2d_raw"
        self.scans_root = self.root / "data_3d_raw"

    def sequences(self) -> list[str]:
        """Sequence folders present in ``data_2d_raw``, sorted."""
        return sorted(p.name for p in self.images_root.iterdir() if p.is_dir())

    def pose_file(self, sequence: str) -> Path:
        return self.pose_root / sequence / "poses.txt"

    def camera_dir(self, sequence: str, camera: str) -> Path:
        return self.images_root / sequence / f"image_{camera}"

    def raw_folder(self, sequence: str, camera: str) -> Path:
        """``data_rect`` for perspective cameras, ``data_rgb`` for fisheyes."""
        name = "data_rect" if camera in PERSPECTIVE_CAMERAS else "data_rgb"
        return self.camera_dir(sequence, camera) / name

    def cache_folder(
        self,
        sequence: str,
        camera: str,
        image_size: tuple[int, int],
        rotation: tuple[float, float],
        model: str = "official",
        antialias: bool = False,
    ) -> Path:
        if camera in PERSPECTIVE_CAMERAS:
            return self.camera_dir(sequence, camera) / perspective_cache_folder(image_size, antialias)
        return self.camera_dir(sequence, camera) / fisheye_cache_folder(image_size, rotation, model, antialias)

    def scan_file(self, sequence: str, frame_id: int) -> Path:
        return self.scans_root / sequence / "velodyne_points" / "data" / frame_name(frame_id, ".bin")
