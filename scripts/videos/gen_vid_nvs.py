"""Novel views along a camera trajectory: colour sampled from the input image, with the rendered depth below.

    python -m scripts.videos.gen_vid_nvs -i media/example/0000.png                    # KDBTS, simple_movement.npy
    python -m scripts.videos.gen_vid_nvs --index 1044 -k bts                           # KITTI-360 seg/test sample
    python -m scripts.videos.gen_vid_nvs -i my.png --trajectory my_poses.npy --scale 1 --stride 1 --fps 15
    python -m scripts.videos.gen_vid_nvs -m synthetic -c outputs/synthetic/bts --index 0 --frames-dir /tmp/nvs

The trajectory is an ``.npy`` of N x 4 x 4 ``cam_to_world`` poses in the input camera's frame (x right, y down,
z forward); officially ``scripts/videos/trajectories/simple_movement.npy`` with its translations times 0.75 and
every 2nd pose (the defaults). Colour is composited from the input image along each novel ray (black where the
input does not see the rendered surface); depth is inverse depth in magma over the model's near/far. MP4 at
``--fps``, default ``media/videos/nvs/<name>.mp4``; ``--frames-dir`` also keeps every frame as a PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from scripts.common import (
    Camera,
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
from scripts.videos.cameras import load_trajectory
from utils.media import VideoWriter, video_frame
from utils.visualization import colorize_depth

DEFAULT_TRAJECTORY = Path(__file__).resolve().parent / "trajectories" / "simple_movement.npy"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_single_input_args(parser)
    parser.add_argument("--trajectory", type=Path, default=DEFAULT_TRAJECTORY, help="N x 4 x 4 poses (.npy)")
    parser.add_argument("--scale", type=float, default=0.75, help="translation scale (default: %(default)s)")
    parser.add_argument("--stride", type=int, default=2, help="use every n-th pose (default: %(default)s)")
    add_video_args(parser, "media/videos/nvs/<name>.mp4")
    add_model_args(parser)
    add_picture_args(parser, profile=False)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Write the video; returns its path."""
    args = parse_args(argv)
    configure_logging()
    with exit_on_input_error():
        poses = load_trajectory(args.trajectory, args.scale, args.stride)  # (N, 4, 4)
        loaded, view = model_and_single_input(args)
        scene = encode_input(loaded, view)
        out = args.out if args.out is not None else Path("media/videos/nvs") / f"{view.name}.mp4"
        with VideoWriter(out, args.fps, args.frames_dir) as video:
            for cam_to_world in tqdm(poses, desc="novel views", unit="frame"):
                camera = Camera(cam_to_world, view.K_norm, loaded.image_size, loaded.model.z_near, loaded.model.z_far)
                render = render_camera(loaded, scene, view, camera)
                depth = colorize_depth(render.depth, *(args.depth_range or (camera.near, camera.far)))
                video.write(video_frame([render.colors, depth]))
    print(f"wrote {video.count} frames to {out} ({video.codec})")
    return out


if __name__ == "__main__":
    main()
