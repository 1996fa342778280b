"""Which views of a sample are encoder inputs, colour sources (render) and reconstruction targets (loss).

REFERENCE 3.4, 5.4, 6.3. The choice depends only on the number of views and their documented
order, never on dataset internals:

* ``kitti360-mono``: views come in cameras of ``steps = 2`` consecutive frames
  (pL_t, pL_t+1, pR_t, pR_t+1, fL_t+10, fL_t+11, fR_t+10, fR_t+11). A coin ``s`` picks which time of
  the first camera is a loss frame; the other is a render frame; ``s`` flips for every next camera.
* ``default`` (KITTI-Raw, 4 views): a random permutation picks half the views as render frames,
  the other half are loss frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

FrameSampleMode = Literal["kitti360-mono", "default"]
EncodingStyle = Literal["mono", "default", "random", "stereo"]


@dataclass(frozen=True)
class FrameRoles:
    """View indices of one batch, by role."""

    encoder_ids: tuple[int, ...]
    render_ids: tuple[int, ...]
    loss_ids: tuple[int, ...]


def _coin(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2, (1,), generator=generator).item())


def _kitti360_mono(num_views: int, generator: torch.Generator | None) -> tuple[list[int], list[int]]:
    steps = 2
    if num_views % steps != 0:
        raise ValueError(f"kitti360-mono needs pairs of frames per camera, got {num_views} views")
    s = _coin(generator)
    loss, render = [], []
    for cam in range(num_views // steps):
        loss.append(cam * steps + s)
        render.append(cam * steps + 1 - s)
        s = 1 - s
    return render, loss


def _random_split(num_views: int, generator: torch.Generator | None) -> tuple[list[int], list[int]]:
    perm = torch.randperm(num_views, generator=generator).tolist()
    half = num_views // 2
    return sorted(perm[:half]), sorted(perm[half:])


# mode -> (num_views, generator) -> (render ids, loss ids)
_SPLITS = {"kitti360-mono": _kitti360_mono, "default": _random_split}


def choose_encoder_ids(
    style: EncodingStyle, num_views: int, num_multiviews: int = 1, generator: torch.Generator | None = None
) -> tuple[int, ...]:
    """Encoder views for training (REFERENCE 3.4); view 0 is always first.

    ``random``: ``num_multiviews - 1`` extra views from {1..V-1}; ``stereo``: from {1..max(1, V-5)}
    (perspective frames only for V = 8); ``default``: the first ``num_multiviews``; ``mono``: [0].
    """
    if style == "mono":
        return (0,)
    if style == "default":
        return tuple(range(num_multiviews))
    last = num_views - 1 if style == "random" else max(1, num_views - 5)
    extra = (torch.randperm(last, generator=generator) + 1)[: num_multiviews - 1].tolist()
    return (0, *extra)


def choose_frame_roles(
    mode: FrameSampleMode,
    num_views: int,
    encoder_ids: tuple[int, ...] = (0,),
    generator: torch.Generator | None = None,
) -> FrameRoles:
    """Render and loss views for ``mode`` over ``num_views`` views; ``encoder_ids`` are passed through."""
    if mode not in _SPLITS:
        raise ValueError(f"unknown frame sample mode {mode!r}; expected one of {sorted(_SPLITS)}")
    render, loss = _SPLITS[mode](num_views, generator)
    return FrameRoles(encoder_ids=tuple(encoder_ids), render_ids=tuple(render), loss_ids=tuple(loss))


# Named encoder-view sets for evaluating a multi-view model on KITTI-360's 8-view order (REFERENCE 3.4).
EVAL_VIEW_SETS: dict[str, tuple[int, ...]] = {
    "mono": (0,),
    "mono_temporal": (0, 1),
    "stereo": (0, 2),
    "stereo_temporal": (0, 1, 2, 3),
    "stereo_fisheye": (0, 2, 4, 6),
    "full": (0, 1, 2, 3, 4, 5, 6, 7),
}


def resolve_encoder_views(views: str | Sequence[int]) -> list[int]:
    """A named set of :data:`EVAL_VIEW_SETS` or an explicit list of view indices -> the list; view 0 first."""
    if isinstance(views, str):
        if views not in EVAL_VIEW_SETS:
            raise ValueError(f"unknown encoder view set {views!r}; expected one of {sorted(EVAL_VIEW_SETS)} or a list")
        return list(EVAL_VIEW_SETS[views])
    ids = [int(v) for v in views]
    if not ids or ids[0] != 0 or len(set(ids)) != len(ids):
        raise ValueError(f"encoder views must start with view 0 (the input view) and not repeat, got {ids}")
    return ids
