"""What a density field returns for a set of 3D points; the renderer's only view of a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class FieldOutput:
    """Densities of ``N`` world points for each of ``B`` scenes."""

    sigma: Tensor  # (B, N), density after softplus (>= 0)
    invalid: Tensor  # (B, N, Ve), True where the point does not project into encoder view v
    # Raw (pre-softplus) outputs of every head, by head name, each (B, N). Returned, never
    # captured with hooks, so the KD loss sees exactly the points of this call.
    head_outputs: dict[str, Tensor] = field(default_factory=dict)
