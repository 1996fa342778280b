"""Depth and bird's-eye density profile of any image, with the intrinsics of the dataset the model knows.

    python -m scripts.images.gen_img_custom -i media/example/0000.png -m KITTI-360             # KDBTS student
    python -m scripts.images.gen_img_custom -i media/example/0000.png -m KITTI-360 -k mvbts    # MVBTS teacher
    python -m scripts.images.gen_img_custom -i my.jpg -m KITTI-Raw -k bts --plot               # show, don't save
    python -m scripts.images.gen_img_custom -i media/example/0000.png -c out/kitti_360/kdbts --head multi_view
    python -m scripts.images.gen_img_custom -i media/example/synthetic/0000.png -m synthetic -k bts

The image is resized to the model resolution (192 x 640 for the KITTI configs), posed at the identity with the
dataset's default normalised intrinsics (KITTI-360: fx 0.7849, fy 2.9391, cx -0.0312, cy 0.2701; KITTI-Raw:
1.1619, 3.8482, -0.0184, -0.0781). Writes ``<name>_in.png``, ``<name>_depth.png`` (inverse depth, magma) and
``<name>_profile.png`` (bird's-eye profile, x in [-9, 9] m, z in [3, 21] m, far at the top; levelled by the
5-degree inclination for KITTI-360) into ``--out`` (default ``media/img_custom/<dataset>/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scripts.common import (
    add_model_args,
    add_picture_args,
    configure_logging,
    exit_on_input_error,
    image_input,
    input_pictures,
    model_from_args,
    read_image,
)
from utils.media import save_png, show_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img", "-i", required=True, help="input image (any size; resized to the model's)")
    parser.add_argument("--plot", "-p", action="store_true", help="show the pictures with matplotlib, save nothing")
    parser.add_argument("--out", type=Path, help="output folder (default: media/img_custom/<dataset>/)")
    add_model_args(parser)
    add_picture_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Render one image; returns the written files by picture name (empty with ``--plot``)."""
    args = parse_args(argv)
    configure_logging()
    with exit_on_input_error():
        image = read_image(args.img)
        loaded = model_from_args(args)
        view = image_input(image, Path(args.img).stem, loaded)
        pictures = input_pictures(loaded, view, args.profile_res, args.depth_range)
    if args.plot:
        show_images(pictures, title=view.name)
        return {}
    out = args.out if args.out is not None else Path("media/img_custom") / loaded.preset.name
    written = {key: save_png(out / f"{view.name}_{key}.png", image) for key, image in pictures.items()}
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return written


if __name__ == "__main__":
    main()
