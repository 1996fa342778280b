"""A small PLY writer for coloured point clouds (MeshLab, Open3D, CloudCompare, Blender read it).

    write_ply("cloud.ply", points, colors, {"density": sigma})              # binary little-endian
    write_ply("cloud.ply", points, colors, binary=False)                    # ASCII

One ``vertex`` element with ``x y z`` (float32), ``red green blue`` (uint8) and any extra float32 scalars.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)


def write_ply(
    path: str | Path,
    points: Tensor | np.ndarray,
    colors: Tensor | np.ndarray | None = None,
    scalars: Mapping[str, Tensor | np.ndarray] | None = None,
    binary: bool = True,
) -> Path:
    """Write ``N`` points (N, 3) with optional colours (N, 3) (uint8, or floats in [0, 1]) and named float
    scalars (N,) as a PLY file (``binary_little_endian`` or ``ascii``); returns the path."""
    points = _numpy(points).astype(np.float32).reshape(-1, 3)
    N = len(points)
    fields: list[tuple[str, str, np.ndarray]] = [(axis, "<f4", points[:, i]) for i, axis in enumerate("xyz")]
    if colors is not None:
        colors = _numpy(colors)
        if colors.dtype != np.uint8:
            colors = np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
        fields += [(name, "u1", colors.reshape(N, 3)[:, i]) for i, name in enumerate(("red", "green", "blue"))]
    for name, values in (scalars or {}).items():
        fields.append((name, "<f4", _numpy(values).astype(np.float32).reshape(N)))

    ply_types = {"<f4": "float", "u1": "uchar"}
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment density field export (utils/ply.py)",
        f"element vertex {N}",
        *(f"property {ply_types[dtype]} {name}" for name, dtype, _ in fields),
        "end_header",
    ]
    table = np.empty(N, dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, values in fields:
        table[name] = values

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(table.tobytes())
        else:
            formats = ["%.6g" if dtype == "<f4" else "%d" for _, dtype, _ in fields]
            np.savetxt(f, table, fmt=formats)
    return path
