"""`make demo`: generate the synthetic world and print one sample of each loader.

    python -m scripts.demo --out data/synthetic [--small] [--workers N]

Re-running resumes the generation (finished frames are skipped).
"""

from __future__ import annotations

import logging
import time

import torch

from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_raw import KittiRawDataset
from datasets.sample import Sample
from datasets.synthetic.__main__ import parse_args
from datasets.synthetic.generate import generate
from utils.geometry import invert_rigid, transform_points


def describe(name: str, dataset, sample: Sample) -> str:
    """A few lines that show what a loader returns."""
    lines = [
        f"{name}: {len(dataset)} samples; sample {sample.index} = {sample.sequence} frame {sample.frame_id}"
        f" ({'right' if sample.is_right else 'left'}-anchored), {sample.num_views} views",
        f"  images       {tuple(sample.images.shape)} in [{sample.images.min():.2f}, {sample.images.max():.2f}]",
        f"  K_norm[0]    fx'={sample.K_norm[0, 0, 0]:.4f} fy'={sample.K_norm[0, 1, 1]:.4f} "
        f"cx'={sample.K_norm[0, 0, 2]:.4f} cy'={sample.K_norm[0, 1, 2]:.4f}",
    ]
    # Camera centres in view 0's frame (x right, y down, z forward): stereo baseline along x, motion along z.
    centres = transform_points(invert_rigid(sample.cam_to_world[0].double()), sample.cam_to_world[:, :3, 3].double())
    for v in range(sample.num_views):
        x, y, z = centres[v].tolist()
        lines.append(f"  view {v}: camera centre in view 0's frame = ({x:+.2f}, {y:+.2f}, {z:+.2f}) m")
    if sample.depth is not None:
        valid = sample.depth > 0
        lines.append(
            f"  depth        {tuple(sample.depth.shape)}, {int(valid.sum())} lidar pixels, "
            f"{sample.depth[valid].min():.1f}-{sample.depth[valid].max():.1f} m"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    """Takes the generator's options (``--out``, ``--small``, ``--workers``, ...; see
    ``python -m datasets.synthetic --help``)."""
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    generate(config)
    root = config.out
    print(f"Synthetic world ready in {root.resolve()} ({time.perf_counter() - start:.1f} s)\n")

    kitti360 = Kitti360Dataset(
        data_path=root / "KITTI-360",
        split_path=root / "KITTI-360" / "splits" / "train_files.txt",
        return_depth=True,
    )
    kitti_raw = KittiRawDataset(
        data_path=root / "KITTI-Raw",
        pose_path=root / "KITTI-Raw" / "orb-slam_poses",
        split_path=root / "KITTI-Raw" / "splits" / "synthetic" / "train_files.txt",
        return_depth=True,
    )
    with torch.no_grad():
        print(describe("KITTI-360 loader", kitti360, kitti360[0]))
        print()
        print(describe("KITTI-Raw loader", kitti_raw, kitti_raw[0]))


if __name__ == "__main__":
    main()
