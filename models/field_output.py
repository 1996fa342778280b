"""What a density field returns for a set of 3D points; the renderer's only view of a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class FieldOutput:
    """Densities of ``N`` world points for each of ``B`` scenes."""

    sigma: Tensor  # (B, N), density after softplus (>= 0)
    invalid: Tensor  # (B, N, Ve), True where the point does not project into encoder view v
    # Raw (pre-softplus) outputs of every head, by head name, each (B, N). Returned, never
    # captured with hooks, so the KD loss sees exactly the points of this call.
    head_outputs: dict[str, Tensor] = field(default_factory=dict)


def query_in_chunks(field_fn: Callable, queries, chunk_size: int | None) -> FieldOutput:
    """``field_fn`` on world points (B, N, 3), or on :class:`models.rays.RaySamples` (chunked by rays),
    ``chunk_size`` points (rays) at a time (all at once when None), with the outputs concatenated along N (ray-major
    for samples): the same values, bounded memory."""
    N = queries.shape[1] if isinstance(queries, Tensor) else queries.num_rays
    if chunk_size is None or chunk_size >= N:
        return field_fn(queries)

    def chunk(i: int):
        return queries[:, i : i + chunk_size] if isinstance(queries, Tensor) else queries.slice(i, i + chunk_size)

    outs = [field_fn(chunk(i)) for i in range(0, N, chunk_size)]
    return FieldOutput(
        sigma=torch.cat([o.sigma for o in outs], dim=1),
        invalid=torch.cat([o.invalid for o in outs], dim=1),
        head_outputs={k: torch.cat([o.head_outputs[k] for o in outs], dim=1) for k in outs[0].head_outputs},
    )
