"""The animation from the input view up to a top-down view of the density field (REFERENCE 9.1).

    python -m scripts.videos.gen_vid_transition -i media/example/0000.png            # KITTI-360, KDBTS
    python -m scripts.videos.gen_vid_transition -i my.jpg -m KITTI-Raw -k bts
    python -m scripts.videos.gen_vid_transition --index 3 -k mvbts --frames-dir /tmp/transition
    python -m scripts.videos.gen_vid_transition -m synthetic -c outputs/synthetic/kdbts --index 0 --frames 20

``--frames`` (30) animated frames then ``--hold`` (5) frames at the top. Frame ``i`` has progress
``p = (i / (frames - 1))^2``: the camera pitches down by ``t = p * 85`` degrees (90 for KITTI-Raw) and moves to
``y = y_top sin t``, ``z = z_top (1 - cos t)`` (KITTI-360: 10 / -6 m, KITTI-Raw: 14 / -8 m; y points down, so
up); near/far go from the model's to 5/7 m (KITTI-Raw 8/10 m) and the image width shrinks to a square (a central
crop). Each frame shows the colour sampled from the input image above the depth (magma over the frame's
near/far unless ``--depth-range``), centred at the full width. MP4 at ``--fps``, default
``media/videos/transition/<name>.mp4``; ``--frames-dir`` also keeps every frame as a PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from scripts.common import (
    add_model_args,
    add_picture_args,
    add_single_input_args,
    add_video_args,
    configure_logging,
    encode_input,
    exit_on_input_error,
    model_and_single_input,
    render_camera,
)
from scripts.videos.cameras import transition_cameras
from utils.media import VideoWriter, video_frame
from utils.visualization import colorize_depth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_single_input_args(parser)
    parser.add_argument("--frames", type=int, default=30, help="animated frames (default: %(default)s)")
    parser.add_argument("--hold", type=int, default=5, help="extra frames at the top view (default: %(default)s)")
    add_video_args(parser, "media/videos/transition/<name>.mp4")
    add_model_args(parser)
    add_picture_args(parser, profile=False)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Write the video; returns its path."""
    args = parse_args(argv)
    configure_logging()
    with exit_on_input_error():
        loaded, view = model_and_single_input(args)
        scene = encode_input(loaded, view)
        out = args.out if args.out is not None else Path("media/videos/transition") / f"{view.name}.mp4"
        cameras = transition_cameras(
            loaded.preset.transition,
            view.K_norm,
            loaded.image_size,
            loaded.model.z_near,
            loaded.model.z_far,
            args.frames,
            args.hold,
        )
        with VideoWriter(out, args.fps, args.frames_dir) as video:
            for camera in tqdm(cameras, desc="frames", unit="frame"):
                render = render_camera(loaded, scene, view, camera)
                depth = colorize_depth(render.depth, *(args.depth_range or (camera.near, camera.far)))
                video.write(video_frame([render.colors, depth], width=loaded.image_size[1]))
    print(f"wrote {video.count} frames to {out} ({video.codec})")
    return out


if __name__ == "__main__":
    main()
