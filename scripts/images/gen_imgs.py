"""Depth and bird's-eye profile pictures of dataset samples (KITTI-360 or the synthetic world).

    python -m scripts.images.gen_imgs                                      # KITTI-360 seg/test samples 0-3, KDBTS
    python -m scripts.images.gen_imgs --indices 10 42 -k bts --split seg/val
    python -m scripts.images.gen_imgs -m synthetic -c outputs/synthetic/kdbts --split test --indices 0 1
    python -m scripts.images.gen_imgs -m synthetic --data-path /data/synthetic/KITTI-360 -c outputs/synthetic/bts --plot

The left perspective camera of each sample is the input, with its own calibrated intrinsics. Writes, per sample,
``<sequence>_<frame>_in.png``, ``_depth.png`` and ``_profile.png`` into ``--out`` (default
``media/imgs/<dataset>/``), or shows them with ``--plot``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from scripts.common import (
    add_dataset_args,
    add_model_args,
    add_picture_args,
    configure_logging,
    dataset_input,
    exit_on_input_error,
    input_pictures,
    model_from_args,
    open_dataset,
)
from utils.media import save_png, show_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--indices", type=int, nargs="+", default=[0, 1, 2, 3], help="sample indices in the split")
    parser.add_argument("--plot", "-p", action="store_true", help="show the pictures with matplotlib, save nothing")
    parser.add_argument("--out", type=Path, help="output folder (default: media/imgs/<dataset>/)")
    add_dataset_args(parser)
    add_model_args(parser)
    add_picture_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    """Render the chosen samples; returns the written files (empty with ``--plot``)."""
    args = parse_args(argv)
    configure_logging()
    written = []
    with exit_on_input_error():
        loaded = model_from_args(args)
        dataset = open_dataset(args.data_path, args.split or loaded.preset.image_split, loaded)
        out = args.out if args.out is not None else Path("media/imgs") / loaded.preset.name
        for index in tqdm(args.indices, desc="samples", unit="sample"):
            view = dataset_input(dataset, index)
            pictures = input_pictures(loaded, view, args.profile_res, args.depth_range)
            if args.plot:
                show_images(pictures, title=f"sample {index}: {view.name}")
            else:
                written += [save_png(out / f"{view.name}_{key}.png", image) for key, image in pictures.items()]
    if written:
        print(f"wrote {len(written)} pictures to {out}")
    return written


if __name__ == "__main__":
    main()
