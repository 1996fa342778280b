"""Density heads: per-point, per-view inputs -> one raw (pre-softplus) density (REFERENCE 2.3, 3.2, 4.1).

Every head has the same call signature, so a density field can hold several and run them all on the
same points:

    head(view_inputs (B, N, Ve, D), invalid (B, N, Ve) bool) -> raw density (B, N)

* :class:`SingleViewHead` - the BTS density MLP, also the KDBTS student: reads one view (index 0).
* :class:`MultiViewFusionHead` - the MVBTS teacher (official ``MultiViewHead3``): per-view MLP gives a
  confidence logit and a feature, invalid views are masked, softmax over views, fused feature -> MLP.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Logit given to invalid views. Finite (not -inf) as officially: when every view is invalid the softmax is
# uniform over all views instead of NaN.
INVALID_VIEW_LOGIT = -1e9


class MLP(nn.Module):
    """Linear -> ReLU -> Linear (official ``ResnetFC`` with zero residual blocks)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d_in, d_hidden)
        self.output = nn.Linear(d_hidden, d_out)
        for layer in (self.hidden, self.output):
            nn.init.kaiming_normal_(layer.weight, a=0.0, mode="fan_in")
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(..., d_in) -> (..., d_out)."""
        return self.output(torch.relu(self.hidden(x)))


class SingleViewHead(nn.Module):
    """Density from the features of one encoder view (BTS MLP / KDBTS student)."""

    def __init__(self, d_in: int = 103, d_hidden: int = 64, view_index: int = 0) -> None:
        super().__init__()
        self.view_index = view_index
        self.mlp = MLP(d_in, d_hidden, 1)

    def forward(self, view_inputs: Tensor, invalid: Tensor) -> Tensor:
        """view_inputs (B, N, Ve, D), invalid (B, N, Ve) -> raw density (B, N).

        Invalid points are not masked: with ``learn_empty: false`` they keep the border feature.
        """
        return self.mlp(view_inputs[..., self.view_index, :]).squeeze(-1)


class MultiViewFusionHead(nn.Module):
    """Confidence-weighted fusion over encoder views (official ``MultiViewHead3``)."""

    def __init__(
        self,
        d_in: int = 103,
        d_hidden: int = 128,
        d_feature: int = 16,
        d_fusion_hidden: int = 16,
        view_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.view_mlp = MLP(d_in, d_hidden, 1 + d_feature)
        self.fusion_mlp = MLP(d_feature, d_fusion_hidden, 1)
        self.view_dropout = view_dropout

    def per_view(self, view_inputs: Tensor) -> Tensor:
        """(B, N, Ve, D) -> (B, N, Ve, 1 + d_feature): ``[..., 0]`` view logit, ``[..., 1:]`` view feature."""
        return self.view_mlp(view_inputs)

    def drop_views(self, invalid: Tensor) -> Tensor:
        """Training only: mark each secondary view of each point invalid with probability ``view_dropout``.

        View 0 (the single input view at test time) is never dropped. (B, N, Ve) -> (B, N, Ve).
        """
        if not self.training or self.view_dropout <= 0.0 or invalid.shape[-1] < 2:
            return invalid
        dropped = torch.rand(invalid.shape, device=invalid.device) < self.view_dropout
        dropped[..., 0] = False
        return invalid | dropped

    def forward(self, view_inputs: Tensor, invalid: Tensor) -> Tensor:
        """view_inputs (B, N, Ve, D), invalid (B, N, Ve) -> raw density (B, N)."""
        out = self.per_view(view_inputs)  # (B, N, Ve, 1 + F)
        logits = out[..., 0].masked_fill(self.drop_views(invalid), INVALID_VIEW_LOGIT)  # (B, N, Ve)
        weights = torch.softmax(logits, dim=-1)  # (B, N, Ve)
        fused = (weights.unsqueeze(-1) * out[..., 1:]).sum(dim=-2)  # (B, N, F)
        return self.fusion_mlp(fused).squeeze(-1)
