"""Generate the synthetic world in the KITTI-360 and KITTI-Raw on-disk formats.

Static files (calibration, poses, splits, ``world.json``) are written first by the main process;
frames are rendered by a process pool. A frame whose files all exist is skipped, and every file
is written atomically, so an interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from datasets.synthetic import drives as D
from datasets.synthetic import writers as W
from datasets.synthetic.frames import FrameRenderer, frame_paths
from datasets.synthetic.rigs import kitti360_rig, kitti_raw_rig
from datasets.synthetic.root import SyntheticRoot
from datasets.synthetic.world import GENERATOR_VERSION, SyntheticWorld, WorldParams

log = logging.getLogger(__name__)

FIRST_POSED_FRAME = 2  # real KITTI-360 sequences start with unposed frames
END_MARGIN = 22  # a KITTI-360 sample at t needs t + 11 (fisheye) and t + 20 (lidar occupancy)
ROAD_MARGIN = 60.0  # street built before the first and after the last drive


@dataclass
class GeneratorConfig:
    """Size and speed settings of one generation run (the CLI flags)."""

    out: Path
    seed: int = 0
    sequences: int = 2
    frames: int = 100
    raw_drives: int = 1
    raw_frames: int = 60
    workers: int = 2
    small: bool = False
    fisheye_render_scale: float = 0.5
    show_progress: bool = True


def kitti360_splits(specs: list[D.DriveSpec]) -> dict[str, list[tuple[str, int, str]]]:
    """Train (l and r) on all but the last sequence plus its first half; val then test (l) on the rest."""
    splits = {"train": [], "val": [], "test": []}
    for index, spec in enumerate(specs):
        frames = list(range(FIRST_POSED_FRAME, spec.num_frames - END_MARGIN))
        if index < len(specs) - 1:
            train, held_out = frames, []
        else:
            cut = len(frames) // 2 if len(specs) > 1 else (len(frames) * 3) // 5
            train, held_out = frames[:cut], frames[cut:]
        splits["train"] += [(spec.name, f, side) for f in train for side in ("l", "r")]
        half = len(held_out) // 2
        splits["val"] += [(spec.name, f, "l") for f in held_out[:half]]
        splits["test"] += [(spec.name, f, "l") for f in held_out[half:]]
    return splits


def kitti_raw_splits(specs: list[D.DriveSpec]) -> dict[str, list[tuple[str, int, str]]]:
    """Train (l and r) on 70 % of the frames (all of earlier drives); val and test (l) on the last drive's rest."""
    splits = {"train": [], "val": [], "test": []}
    for index, spec in enumerate(specs):
        name = f"{W.RAW_DATE}/{spec.name}"
        frames = list(range(spec.num_frames - 1))
        cut = len(frames) if index < len(specs) - 1 else (len(frames) * 7) // 10
        splits["train"] += [(name, f, side) for f in frames[:cut] for side in ("l", "r")]
        rest = frames[cut:]
        splits["val"] += [(name, f, "l") for f in rest[: len(rest) // 2]]
        splits["test"] += [(name, f, "l") for f in rest[len(rest) // 2 :]]
    return splits


def _metadata(config: GeneratorConfig, params: WorldParams, k360: list, raw: list) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "params": asdict(params),
        "small": config.small,
        "fisheye_render_scale": config.fisheye_render_scale,
        "kitti_360": {"sequences": [s.to_dict() for s in k360], "first_posed_frame": FIRST_POSED_FRAME},
        "kitti_raw": {"date": W.RAW_DATE, "drives": [s.to_dict() for s in raw], "split": "synthetic"},
    }


def write_static_files(root: Path, world: SyntheticWorld, meta: dict, k360: list, raw: list) -> None:
    """Calibration, poses, splits and ``world.json`` (cheap; always rewritten)."""
    rig, raw_rig = kitti360_rig(meta["small"]), kitti_raw_rig(meta["small"])
    k360_root, raw_root = root / "KITTI-360", root / "KITTI-Raw"
    W.write_kitti360_calibration(k360_root, rig)
    for spec in k360:
        W.write_kitti360_poses(k360_root, spec, D.kitti360_pose_to_world(world, spec), FIRST_POSED_FRAME)
    for name, entries in kitti360_splits(k360).items():
        W.write_split(k360_root / "splits" / f"{name}_files.txt", entries)
    if raw:
        W.write_kitti_raw_calibration(raw_root, raw_rig)
        for spec in raw:
            W.write_orb_slam_poses(raw_root, spec, D.kitti_raw_rect0_to_world(world, spec, raw_rig))
        for name, entries in kitti_raw_splits(raw).items():
            W.write_split(raw_root / "splits" / "synthetic" / f"{name}_files.txt", entries)
    W.write_text(root / "world.json", json.dumps(meta, indent=2) + "\n")


_WORKER: FrameRenderer | None = None  # one renderer per pool process (rays are built once)


def _init_worker(root: Path) -> None:
    global _WORKER
    # One thread per process: the pool already fills the cores, extra OpenCV/torch threads only contend.
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    cv2.setNumThreads(1)
    _WORKER = FrameRenderer(SyntheticRoot.load(root))


def _run_task(task: tuple[str, int, int]) -> bool:
    return _WORKER.render(*task)


def generate(config: GeneratorConfig) -> dict:
    """Write the whole synthetic root; returns timing and counts."""
    start = time.perf_counter()
    root = Path(config.out)
    root.mkdir(parents=True, exist_ok=True)
    k360, raw, road_end = D.plan_drives(config.sequences, config.frames, config.raw_drives, config.raw_frames)
    params = WorldParams(seed=config.seed, s_min=-ROAD_MARGIN, s_max=float(np.ceil(road_end + ROAD_MARGIN)))
    meta = _metadata(config, params, k360, raw)
    existing = root / "world.json"
    if existing.is_file() and json.loads(existing.read_text()) != meta:
        raise ValueError(f"{root} holds a different synthetic world (see {existing}); use another --out or delete it.")
    world = SyntheticWorld(params)
    write_static_files(root, world, meta, k360, raw)
    tasks = [("kitti_360", i, f) for i, s in enumerate(k360) for f in range(s.num_frames)]
    tasks += [("kitti_raw", i, f) for i, s in enumerate(raw) for f in range(s.num_frames)]
    synthetic = SyntheticRoot.load(root)
    todo = [t for t in tasks if not all(p.is_file() for p in frame_paths(synthetic, *t).values())]
    log.info("%d of %d frames to render (%d already on disk)", len(todo), len(tasks), len(tasks) - len(todo))
    bar = tqdm(total=len(todo), desc="synthetic frames", unit="frame", disable=not config.show_progress)
    if config.workers <= 1 or len(todo) <= 1:
        renderer = FrameRenderer(synthetic)
        for task in todo:
            renderer.render(*task)
            bar.update()
    else:
        context = mp.get_context("spawn")  # fork after torch has run threads in the parent can deadlock
        with context.Pool(config.workers, initializer=_init_worker, initargs=(root,)) as pool:
            for _ in pool.imap_unordered(_run_task, todo, chunksize=2):
                bar.update()
    bar.close()
    return {"root": root, "seconds": time.perf_counter() - start, "rendered": len(todo), "total": len(tasks)}
