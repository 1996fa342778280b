"""Evaluation outputs: console table, ``metrics.json``, per-frame CSV and bird's-eye pictures of the worst frames."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checked-out commit, read from ``.git`` (None outside a repository)."""
    head = root / ".git" / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text().strip()
    if not ref.startswith("ref: "):
        return ref
    ref_file = root / ".git" / ref[5:]
    if ref_file.is_file():
        return ref_file.read_text().strip()
    packed = root / ".git" / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line.endswith(ref[5:]):
                return line.split()[0]
    return None


def format_table(summary: dict[str, float], counts: dict[str, int]) -> str:
    """``benchmark/method/metric`` columns as one table per benchmark: rows = methods, columns = metrics."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in summary.items():
        parts = key.split("/")
        if len(parts) != 3:
            continue
        tables.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = value
    lines = []
    for benchmark, methods in tables.items():
        metrics = list(next(iter(methods.values())))
        lines.append(f"[{benchmark}]")
        lines.append(f"{'method':<16}" + "".join(f"{m:>12}" for m in metrics))
        for method, values in methods.items():
            cells = "".join(f"{_fmt(values.get(m, math.nan)):>12}" for m in metrics)
            lines.append(f"{method:<16}{cells}")
        frames = max(counts.get(f"{benchmark}/{m}/{metrics[0]}", 0) for m in methods)
        lines.append(f"({frames} frames)")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def write_csv(path: Path, rows: list[dict]) -> None:
    """One line per frame: ``sequence``, ``frame_id`` and every metric column."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")
    tmp.replace(path)


def save_maps(folder: Path, name: str, maps: dict[str, np.ndarray]) -> Path:
    """A side-by-side bird's-eye picture (far at the top) of boolean (Z, X) maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(maps), figsize=(2.2 * len(maps), 4))
    for ax, (title, values) in zip(np.atleast_1d(axes), maps.items(), strict=True):
        ax.imshow(values.astype(np.float32), cmap="gray", vmin=0, vmax=1, interpolation="none")
        ax.set_title(title)
        ax.set_axis_off()
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path
