"""Export the density field of one image as a coloured point cloud (PLY) for MeshLab, Open3D or CloudCompare.

    python -m scripts.export_ply -i media/example/0000.png                          # KITTI-360, KDBTS
    python -m scripts.export_ply -i media/example/0000.png -k mvbts --spacing 0.2 --threshold 1.0 --ascii
    python -m scripts.export_ply --index 0 -m synthetic -c outputs/synthetic/bts --out /tmp/scene.ply

A regular grid of points (spacing ``--spacing`` m) fills the box ``--x-range`` x ``--y-range`` x ``--z-range`` in
front of the camera, in the levelled camera frame (x right, y down, z forward; for KITTI-360 the camera frame
rotated by the 5-degree inclination so that the road is horizontal, as in the occupancy protocol). A point is
kept where the field's density exceeds ``--threshold`` (default 0.5, the occupancy protocol's) and the input
camera sees it (points outside the frustum carry no information). Its colour is the input image's colour at its
projection. The PLY holds x, y, z in that levelled frame, red, green, blue and the density; binary little-endian
by default, ``--ascii`` for text. Default output: ``media/ply/<name>.ply``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor

from models.rendering import sample_colors
from scripts.common import (
    DensityFn,
    InputView,
    add_model_args,
    add_single_input_args,
    configure_logging,
    encode_input,
    exit_on_input_error,
    input_render_views,
    model_and_single_input,
    model_density,
)
from utils.occupancy.grid import transform
from utils.ply import write_ply


def axis_values(lo: float, hi: float, spacing: float) -> Tensor:
    """``lo, lo + spacing, ...`` up to ``hi`` (included when it falls on the grid), (n,)."""
    count = math.floor((hi - lo) / spacing + 1e-6) + 1
    return lo + spacing * torch.arange(count, dtype=torch.float64)


def box_grid(
    x_range: tuple[float, float], y_range: tuple[float, float], z_range: tuple[float, float], spacing: float
) -> Tensor:
    """Points (N, 3) of a regular grid filling a box, z slowest and x fastest."""
    z, y, x = torch.meshgrid(
        axis_values(*z_range, spacing), axis_values(*y_range, spacing), axis_values(*x_range, spacing), indexing="ij"
    )
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)


def occupied_points(
    density: DensityFn, points_level: Tensor, level_to_cam: Tensor, threshold: float
) -> tuple[Tensor, Tensor]:
    """The grid points (N, 3) of the levelled frame whose density exceeds ``threshold`` and that the input camera
    sees: returns those points (M, 3) and their densities (M,)."""
    sigma, invalid = density(transform(level_to_cam, points_level))
    keep = (sigma > threshold) & ~invalid
    return points_level[keep], sigma[keep]


@torch.no_grad()
def input_colors(view: InputView, points_cam: Tensor) -> Tensor:
    """Colours (N, 3) in [0, 1] of the input image at the projections of camera-frame points (N, 3)."""
    colors, _ = sample_colors(points_cam[None].float(), input_render_views(view, torch.device("cpu")))
    return colors[0, :, 0]  # (1, N, Vr = 1, 3) -> (N, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_single_input_args(parser)
    box = parser.add_argument_group("grid (levelled camera frame, metres)")
    box.add_argument("--x-range", type=float, nargs=2, default=[-9.0, 9.0], metavar=("MIN", "MAX"), help="right")
    box.add_argument("--y-range", type=float, nargs=2, default=[-3.0, 2.0], metavar=("MIN", "MAX"), help="down")
    box.add_argument("--z-range", type=float, nargs=2, default=[3.0, 21.0], metavar=("MIN", "MAX"), help="forward")
    box.add_argument("--spacing", type=float, default=0.1, help="grid spacing (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.5, help="density threshold (default: %(default)s)")
    parser.add_argument("--ascii", action="store_true", help="write an ASCII PLY (default: binary little-endian)")
    parser.add_argument("--out", type=Path, help="PLY file (default: media/ply/<name>.ply)")
    add_model_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Write the point cloud; returns its path."""
    args = parse_args(argv)
    configure_logging()
    with exit_on_input_error():
        loaded, view = model_and_single_input(args)
        level_to_cam = loaded.preset.level_to_cam()
        grid = box_grid(args.x_range, args.y_range, args.z_range, args.spacing)  # (N, 3), levelled frame
        density = model_density(loaded, encode_input(loaded, view))
        points, sigma = occupied_points(density, grid, level_to_cam, args.threshold)
        colors = input_colors(view, transform(level_to_cam, points))
        out = args.out if args.out is not None else Path("media/ply") / f"{view.name}.ply"
        write_ply(out, points, colors, {"density": sigma}, binary=not args.ascii)
    print(f"wrote {len(points)} of {len(grid)} grid points to {out}")
    return out


if __name__ == "__main__":
    main()
