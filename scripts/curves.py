"""Learning curves and result tables as pictures (matplotlib, no screen needed), for the demo and the study.

* :func:`read_scalars` - a run's TensorBoard scalars by tag;
* :func:`smooth` - a centred moving average that does not sag at the two ends;
* :func:`plot_runs` - one panel per scalar, one line per run (e.g. the demo's three models);
* :func:`table_picture` - a markdown-like table (header + rows of strings) drawn as a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars of a run by tag: (iteration, value) in order (the last value of a repeated step, as a
    resumed run writes a second event file)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[int, float]] = {}
    for events in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            curves.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    return {tag: sorted(values.items()) for tag, values in curves.items()}


def smooth(values: np.ndarray, fraction: float = 1 / 15) -> np.ndarray:
    """Centred moving average over ``fraction`` of the points, averaging over fewer points at the two ends (so the
    curve neither sags nor jumps there)."""
    values = np.asarray(values, dtype=float)
    window = np.ones(max(1, int(values.size * fraction)))
    if values.size < 6 or window.size == 1:
        return values
    return np.convolve(values, window, mode="same") / np.convolve(np.ones_like(values), window, mode="same")


def plot_runs(
    path: Path,
    title: str,
    runs: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    panels: Sequence[tuple[str, str]],
    smoothed: Sequence[str] = ("train/loss",),
) -> Path:
    """One panel per ``(tag, panel title)`` of ``panels``, one line per run of ``runs`` (name -> tag -> points);
    tags in ``smoothed`` are drawn as a moving average over the raw values (drawn faintly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (tag, label) in zip(axes[0], panels, strict=True):
        for (name, scalars), colour in zip(runs.items(), colours * 4, strict=False):
            points = scalars.get(tag, [])
            if not points:
                continue
            x = np.array([p[0] for p in points], dtype=float)
            y = np.array([p[1] for p in points], dtype=float)
            if tag in smoothed:
                ax.plot(x, y, color=colour, alpha=0.2, linewidth=0.7)
                y = smooth(y)
            ax.plot(x, y, color=colour, label=name, linewidth=1.8, marker="" if tag in smoothed else "o")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def table_picture(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], title: str, bold_rows: Sequence[int] = ()
) -> Path:
    """Draw a table (``header``, ``rows`` of cell strings) as a PNG; the rows ``bold_rows`` (indices) in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(8.0, 1.05 * len(header) + 1.6)
    fig, ax = plt.subplots(figsize=(width, 0.42 * (len(rows) + 2) + 0.4))
    ax.axis("off")
    table = ax.table(cellText=[list(r) for r in rows], colLabels=list(header), loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))
    table.scale(1.0, 1.35)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
        elif row - 1 in bold_rows:
            cell.set_text_props(weight="bold")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
