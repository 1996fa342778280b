"""Preprocess KITTI-360 images into the loader's cache (decision 6).

    python -m datasets.kitti_360.preprocess -d data/KITTI-360 [--size 192 640] [--fisheye-rotation 0 -15]
        [--antialias] [--workers N] [--sequences 2013_05_28_drive_0000_sync ...]

writes ``data_2d_raw/<seq>/image_00|01/data_192x640/<%010d>.png`` (perspective, cv2 INTER_LINEAR)
and ``image_02|03/data_192x640_0x-15/<%010d>.png`` (fisheyes resampled to the virtual pinhole),
the official folder names, so existing preprocessed copies of KITTI-360 work. ``--antialias`` (the loader's
``antialias=true``) resizes with INTER_AREA and averages supersampled fisheye reads into ``..._antialiased``
folders. Existing outputs are
skipped and every file is written atomically, so the command can be interrupted and re-run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from datasets.calibration import DatasetError, require_dir
from datasets.io import read_rgb, write_rgb
from datasets.kitti_360.calibration import load_calibration
from datasets.kitti_360.fisheye import FisheyeModel, resample_fisheye_rgb
from datasets.kitti_360.images import ViewReader, fisheye_grid, list_frames, resize_perspective, to_uint8
from datasets.kitti_360.layout import (
    FISHEYE_CAMERAS,
    HINT_IMAGES,
    PERSPECTIVE_CAMERAS,
    Kitti360Layout,
)

logger = logging.getLogger(__name__)

# Per-process state: the fisheye sampling grids, built once per worker.
_STATE: dict = {}


@dataclass(frozen=True)
class PreprocessReport:
    written: int
    skipped: int  # outputs that already existed
    failed: tuple[str, ...] = ()  # one line per input that could not be read or converted (file: reason)


def _init_worker(
    calib_dir: str,
    image_size: tuple[int, int],
    rotation: tuple[float, float],
    model: str,
    antialias: bool = False,
    one_thread: bool = True,
) -> None:
    if one_thread:  # pool workers: one thread each (the caller's process keeps its own setting)
        torch.set_num_threads(1)
    calibration = load_calibration(Path(calib_dir), rotation)
    _STATE["image_size"] = image_size
    _STATE["antialias"] = antialias
    _STATE["perspective_size"] = calibration.perspective_size
    _STATE["fisheye"] = {c: calibration.fisheye[c] for c in FISHEYE_CAMERAS}
    _STATE["grids"] = {c: fisheye_grid(calibration, c, image_size, model, antialias) for c in FISHEYE_CAMERAS}


def _process(task: tuple[str, str, str]) -> str | None:
    """Convert one image; a file that cannot be read or has the wrong size gives its error line instead."""
    try:
        _convert(*task)
    except DatasetError as err:
        return f"{task[1]}: {str(err).splitlines()[0]}"
    return None


def _convert(camera: str, source: str, target: str) -> None:
    image = read_rgb(Path(source), HINT_IMAGES)
    if camera in PERSPECTIVE_CAMERAS:
        ViewReader.check_size(Path(source), image, _STATE["perspective_size"], "perspective.txt (S_rect_00)")
        out = to_uint8(resize_perspective(image, _STATE["image_size"], _STATE["antialias"]))
    else:
        mei = _STATE["fisheye"][camera]
        ViewReader.check_size(Path(source), image, (mei.height, mei.width), f"image_{camera}.yaml")
        out = resample_fisheye_rgb(image, *_STATE["grids"][camera])
    write_rgb(Path(target), out)


def _tasks(
    layout: Kitti360Layout, sequences: Iterable[str], image_size, rotation, model, antialias
) -> tuple[list, int]:
    tasks, skipped = [], 0
    for sequence in sequences:
        require_dir(layout.images_root / sequence, HINT_IMAGES)
        for camera in PERSPECTIVE_CAMERAS + FISHEYE_CAMERAS:
            source_dir = layout.raw_folder(sequence, camera)
            names = sorted(list_frames(source_dir))
            if not names:
                logger.warning("No images in %s: nothing to preprocess there. %s", source_dir, HINT_IMAGES)
                continue
            target_dir = layout.cache_folder(sequence, camera, image_size, rotation, model, antialias)
            done = list_frames(target_dir)
            skipped += sum(name in done for name in names)
            tasks += [(camera, str(source_dir / n), str(target_dir / n)) for n in names if n not in done]
    return tasks, skipped


def preprocess(
    data_path: Path,
    image_size: tuple[int, int] = (192, 640),
    fisheye_rotation: tuple[float, float] = (0.0, -15.0),
    fisheye_model: FisheyeModel = "official",
    workers: int = 1,
    sequences: list[str] | None = None,
    progress: bool = True,
    antialias: bool = False,
) -> PreprocessReport:
    """Fill the cache for ``sequences`` (default: every folder in ``data_2d_raw``); skip existing files.

    A bad input (unreadable, corrupt, wrong size) does not stop the others: every one is listed in the report.
    """
    layout = Kitti360Layout(Path(data_path))
    require_dir(layout.images_root, HINT_IMAGES)
    image_size = (int(image_size[0]), int(image_size[1]))
    rotation = (float(fisheye_rotation[0]), float(fisheye_rotation[1]))
    sequences = sequences or layout.sequences()
    tasks, skipped = _tasks(layout, sequences, image_size, rotation, fisheye_model, antialias)
    logger.info("KITTI-360 preprocessing: %d images to write, %d already done", len(tasks), skipped)
    init_args = (str(layout.calibration), image_size, rotation, fisheye_model, antialias)
    bar = tqdm(total=len(tasks), desc="KITTI-360 preprocess", unit="img", disable=not progress)
    failed = []
    with contextlib.ExitStack() as stack:
        if workers <= 1 or len(tasks) < 2:
            _init_worker(*init_args, one_thread=False)
            results = map(_process, tasks)
        else:
            # spawn: forked workers can deadlock in OpenMP/torch thread pools of the parent.
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=init_args)
            results = stack.enter_context(pool).map(_process, tasks, chunksize=16)
        for error in results:
            if error is not None:
                failed.append(error)
                bar.set_postfix(failed=len(failed))
            bar.update()
    bar.close()
    return PreprocessReport(written=len(tasks) - len(failed), skipped=skipped, failed=tuple(failed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--data-path", required=True, type=Path, help="KITTI-360 root folder")
    parser.add_argument("--size", nargs=2, type=int, default=(192, 640), metavar=("H", "W"))
    parser.add_argument("--fisheye-rotation", nargs=2, type=float, default=(0.0, -15.0), metavar=("YAW", "PITCH"))
    parser.add_argument("--fisheye-model", choices=("official", "exact"), default="official")
    parser.add_argument(
        "--antialias",
        action="store_true",
        help="INTER_AREA / supersampled fisheyes instead of the official INTER_LINEAR / one bilinear sample per pixel "
        "(the loader's antialias=true; the synthetic configs use it at 64 x 192)",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--sequences", nargs="+", default=None, help="default: all of data_2d_raw")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = preprocess(
        args.data_path,
        tuple(args.size),
        tuple(args.fisheye_rotation),
        args.fisheye_model,
        args.workers,
        args.sequences,
        antialias=args.antialias,
    )
    logger.info("Done: %d written, %d already present", report.written, report.skipped)
    if report.failed:
        listing = "\n  ".join(report.failed)
        raise SystemExit(
            f"{len(report.failed)} images could not be preprocessed (re-download or re-extract them, then run this "
            f"command again; the others are done):\n  {listing}"
        )


if __name__ == "__main__":
    main()
