"""Density heads: per-point, per-view inputs -> one raw (pre-softplus) density (REFERENCE 2.3, 3.2, 4.1).

Every head has the same call signature, so a density field can hold several and run them all on the
same points:

    head(view_inputs (B, N, Ve, D), invalid (B, N, Ve) bool) -> raw density (B, N)

* :class:`SingleViewHead` - the BTS density MLP, also the KDBTS student: reads one view (index 0).
* :class:`MultiViewFusionHead` - the MVBTS teacher (official ``MultiViewHead3``): per-view MLP gives a
  confidence logit and a feature, invalid views are masked, softmax over views, fused feature -> MLP.
* :class:`TransformerFusionHead` - the "DFT" teacher variant: per-view embedding, a learned read-out token,
  a transformer encoder over [token, views] with invalid views masked, the token's output -> MLP.

Both teachers drop secondary views at random in training (:func:`drop_views`, REFERENCE 3.3).
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


def drop_views(invalid: Tensor, rate: float) -> Tensor:
    """Mark each secondary view of each point invalid with probability ``rate`` (training-time view dropout).

    Per point and per view, independently; view 0 (the single input view at test time) is never dropped.
    (B, N, Ve) -> (B, N, Ve).
    """
    if rate <= 0.0 or invalid.shape[-1] < 2:
        return invalid
    dropped = torch.rand(invalid.shape, device=invalid.device) < rate
    dropped[..., 0] = False
    return invalid | dropped


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
        """:func:`drop_views` at ``view_dropout`` in training; the identity in eval mode."""
        return drop_views(invalid, self.view_dropout) if self.training else invalid

    def forward(self, view_inputs: Tensor, invalid: Tensor) -> Tensor:
        """view_inputs (B, N, Ve, D), invalid (B, N, Ve) -> raw density (B, N)."""
        out = self.per_view(view_inputs)  # (B, N, Ve, 1 + F)
        logits = out[..., 0].masked_fill(self.drop_views(invalid), INVALID_VIEW_LOGIT)  # (B, N, Ve)
        weights = torch.softmax(logits, dim=-1)  # (B, N, Ve)
        fused = (weights.unsqueeze(-1) * out[..., 1:]).sum(dim=-2)  # (B, N, F)
        return self.fusion_mlp(fused).squeeze(-1)


class TransformerFusionHead(nn.Module):
    """Attention over encoder views with a learned read-out token (the official "DFT" ``MultiViewHead``).

    Per view: ``LayerNorm -> Linear(d_in, d_embed_hidden) -> ELU -> Linear(., d_model)`` plus a linear skip
    from the input; the read-out token (a parameter) is put in front of the views; ``num_layers`` transformer
    encoder layers (``num_heads`` heads, feed-forward width ``d_feedforward``) attend with invalid views masked
    (the token never is, so a point no view sees still gets an output: the token's own); token 0 ->
    ``Linear(d_model, d_out_hidden) -> ELU -> Linear(., 1)``.
    """

    def __init__(
        self,
        d_in: int = 103,
        d_embed_hidden: int = 64,
        d_model: int = 32,
        num_layers: int = 3,
        num_heads: int = 4,
        d_feedforward: int = 32,
        d_out_hidden: int = 16,
        dropout: float = 0.1,
        view_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.LayerNorm(d_in), nn.Linear(d_in, d_embed_hidden), nn.ELU(), nn.Linear(d_embed_hidden, d_model)
        )
        self.embed_skip = nn.Linear(d_in, d_model)
        self.readout_token = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.readout_token, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward=d_feedforward, dropout=dropout, batch_first=True
        )
        # enable_nested_tensor=False: one code path in train and eval mode (the nested fast path changes
        # nothing numerically but warns and skips padding masks inconsistently across versions).
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output = nn.Sequential(nn.Linear(d_model, d_out_hidden), nn.ELU(), nn.Linear(d_out_hidden, 1))
        self.view_dropout = view_dropout

    def forward(self, view_inputs: Tensor, invalid: Tensor) -> Tensor:
        """view_inputs (B, N, Ve, D), invalid (B, N, Ve) -> raw density (B, N)."""
        B, N, Ve, D = view_inputs.shape
        if self.training:
            invalid = drop_views(invalid, self.view_dropout)
        tokens = self.embed(view_inputs) + self.embed_skip(view_inputs)  # (B, N, Ve, d)
        tokens = tokens.reshape(B * N, Ve, -1)
        tokens = torch.cat([self.readout_token.expand(B * N, 1, -1), tokens], dim=1)  # (BN, 1 + Ve, d)
        mask = torch.cat([invalid.new_zeros(B, N, 1), invalid], dim=-1).reshape(B * N, 1 + Ve)  # True = ignore
        out = self.transformer(tokens, src_key_padding_mask=mask)  # (BN, 1 + Ve, d)
        return self.output(out[:, 0]).reshape(B, N)
