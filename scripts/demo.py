"""`make demo`: generate the synthetic world and print one sample of each loader.

    python -m scripts.demo --root data/synthetic

Re-running resumes the generation (finished frames are skipped).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_raw import KittiRawDataset
from datasets.sample import Sample
from datasets.synthetic.generate import GeneratorConfig, generate


def describe(name: str, dataset, sample: Sample) -> str:
    """A few lines that show what a loader returns."""
    lines = [
        f"{name}: {len(dataset)} samples; sample {sample.index} = {sample.sequence} frame {sample.frame_id}"
        f" ({'right' if sample.is_right else 'left'}-anchored), {sample.num_views} views",
        f"  images       {tuple(sample.images.shape)} in [{sample.images.min():.2f}, {sample.images.max():.2f}]",
        f"  K_norm[0]    fx'={sample.K_norm[0, 0, 0]:.4f} fy'={sample.K_norm[0, 1, 1]:.4f} "
        f"cx'={sample.K_norm[0, 0, 2]:.4f} cy'={sample.K_norm[0, 1, 2]:.4f}",
    ]
    centres = sample.cam_to_world[:, :3, 3]
    relative = centres - centres[0]
    for v in range(sample.num_views):
        x, y, z = relative[v].tolist()
        lines.append(f"  view {v}: camera centre relative to view 0 = ({x:+.2f}, {y:+.2f}, {z:+.2f}) m")
    if sample.depth is not None:
        valid = sample.depth > 0
        lines.append(
            f"  depth        {tuple(sample.depth.shape)}, {int(valid.sum())} lidar pixels, "
            f"{sample.depth[valid].min():.1f}-{sample.depth[valid].max():.1f} m"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/synthetic"), help="where the world is written")
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    generate(GeneratorConfig(out=args.root, workers=args.workers))
    print(f"Synthetic world ready in {args.root.resolve()} ({time.perf_counter() - start:.1f} s)\n")

    kitti360 = Kitti360Dataset(
        data_path=args.root / "KITTI-360",
        split_path=args.root / "KITTI-360" / "splits" / "train_files.txt",
        return_depth=True,
    )
    kitti_raw = KittiRawDataset(
        data_path=args.root / "KITTI-Raw",
        pose_path=args.root / "KITTI-Raw" / "orb-slam_poses",
        split_path=args.root / "KITTI-Raw" / "splits" / "synthetic" / "train_files.txt",
        return_depth=True,
    )
    with torch.no_grad():
        print(describe("KITTI-360 loader", kitti360, kitti360[0]))
        print()
        print(describe("KITTI-Raw loader", kitti_raw, kitti_raw[0]))


if __name__ == "__main__":
    main()
