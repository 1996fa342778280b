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


def json_safe(value):
    """``value`` with every non-finite float (a metric no frame could score) as None: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """Strict JSON (NaN and infinities written as null), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, default=str, allow_nan=False) + "\n")
    tmp.replace(path)


def save_maps(folder: Path, name: str, maps: dict[str, np.ndarray], scale: int = 2) -> Path:
    """A side-by-side bird's-eye picture (far at the top) of boolean (Z, X) maps, each under its title.

    Drawn with OpenCV (a few milliseconds; matplotlib cost more than the model on a cached evaluation).
    """
    import cv2

    panels = []
    for title, values in maps.items():
        image = np.repeat(np.repeat(values.astype(np.uint8) * 255, scale, axis=0), scale, axis=1)
        bar = np.full((24, image.shape[1]), 225, np.uint8)
        cv2.putText(bar, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
        panels.append(np.concatenate([bar, image], axis=0))
        panels.append(np.full((panels[-1].shape[0], 6), 128, np.uint8))  # a grey gap: white panels stay apart
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if not cv2.imwrite(str(path), np.concatenate(panels[:-1], axis=1)):
        raise OSError(f"could not write {path}")
    return path
