"""Video over a driving sequence: the input frame above its rendered depth, optionally the bird's-eye profile.

    python -m scripts.videos.gen_vid_seq_kdbts                                   # KDBTS, val_seq of drive 0000
    python -m scripts.videos.gen_vid_seq_kdbts -k mvbts --start 1000 --end 1400 --profile
    python -m scripts.videos.gen_vid_seq_kdbts -k bts --split val_seq/2013_05_28_drive_0002_sync --stride 1
    python -m scripts.videos.gen_vid_seq_kdbts -m synthetic -c outputs/synthetic/kdbts --profile --frames-dir /tmp/f

``--kind`` (kdbts, mvbts, bts) picks the default config and checkpoint, ``--head`` the density head (default the
model's eval_head: the KDBTS student, the MVBTS teacher). Frames ``--start`` to ``--end`` (exclusive, sample
indices of the split) every ``--stride``; inverse depth in magma over ``--depth-range`` (default 3-30 m as
officially). MP4 (H.264 where OpenCV can write it, else MPEG-4) at ``--fps``, default
``media/videos/seq/<dataset>_<kind>_<split>.mp4``; ``--frames-dir`` also keeps every frame as a PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from scripts.common import (
    InputError,
    add_dataset_args,
    add_model_args,
    add_picture_args,
    add_video_args,
    configure_logging,
    dataset_input,
    exit_on_input_error,
    input_pictures,
    model_from_args,
    open_dataset,
)
from utils.media import VideoWriter, video_frame


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=int, default=0, help="first sample index (default: %(default)s)")
    parser.add_argument("--end", type=int, default=None, help="stop before this sample index (default: the end)")
    parser.add_argument("--stride", type=int, default=2, help="use every n-th sample (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="add the bird's-eye profile on the right")
    add_video_args(parser, "media/videos/seq/<dataset>_<kind>_<split>.mp4")
    add_dataset_args(parser)
    add_model_args(parser, default_kind="kdbts")
    add_picture_args(parser, depth_range=(3.0, 30.0))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Write the video; returns its path."""
    args = parse_args(argv)
    configure_logging()
    with exit_on_input_error():
        loaded = model_from_args(args)
        split = args.split or loaded.preset.video_split
        dataset = open_dataset(args.data_path, split, loaded)
        indices = range(args.start, len(dataset) if args.end is None else min(args.end, len(dataset)), args.stride)
        if len(indices) == 0:
            raise InputError(f"no samples in [{args.start}, {args.end}) of a split of {len(dataset)} samples")
        default_name = f"{loaded.preset.name}_{args.kind}_{Path(split).name}.mp4"
        out = args.out if args.out is not None else Path("media/videos/seq") / default_name
        profile_res = args.profile_res if args.profile else None
        with VideoWriter(out, args.fps, args.frames_dir) as video:
            for index in tqdm(indices, desc="frames", unit="frame"):
                pictures = input_pictures(loaded, dataset_input(dataset, index), profile_res, args.depth_range)
                video.write(video_frame([pictures["in"], pictures["depth"]], side=pictures.get("profile")))
    print(f"wrote {video.count} frames to {out} ({video.codec})")
    return out


if __name__ == "__main__":
    main()
