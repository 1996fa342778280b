"""Density heads: per-point, per-view inputs -> one raw (pre-softplus) density (REFERENCE 2.3, 3.2, 4.1).

Every head has the same call signature, so a density field can hold several and run them all on the
same points:

    head(view_inputs (..., Ve, D), invalid (..., Ve) bool) -> raw density (...)

``view_inputs`` is a :class:`ViewInputs` (the official 103-d vector kept in parts, see there) or a plain tensor.

* :class:`SingleViewHead` - the BTS density MLP, also the KDBTS student: reads one view (index 0).
* :class:`MultiViewFusionHead` - the MVBTS teacher (official ``MultiViewHead3``): per-view MLP gives a
  confidence logit and a feature, invalid views are masked, softmax over views, fused feature -> MLP.
* :class:`TransformerFusionHead` - the "DFT" teacher variant: per-view embedding, a learned read-out token,
  a transformer encoder over [token, views] with invalid views masked, the token's output -> MLP.

Both teachers drop secondary views at random in training (:func:`drop_views`, REFERENCE 3.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Points per block of :meth:`MLP.forward_blocked`: (8192, 64) float32 activations are 2 MiB, about a core's L2
# cache (a 1024-ray chunk of 64 samples: 1.5-1.8 ms in blocks of 4096-16384 points, 4-13 ms whole).
BLOCK_ROWS = 8192

# Logit given to invalid views. Finite (not -inf) as officially: when every view is invalid the softmax is
# uniform over all views instead of NaN.
INVALID_VIEW_LOGIT = -1e9


@dataclass
class ViewInputs:
    """What the heads read for each point and encoder view, kept in parts whose concatenation along the last
    dimension is the official vector: [sampled feature (C), code (u, v, z~) (3), sin / cos terms (36)].

    A head's first layer multiplies each part with its columns of the weight (:class:`PartsLinear`): no
    concatenated copy is made, the constant parts need no gradient, and a part shared by all samples of a ray
    (leading dims of size 1 that broadcast against the others) is multiplied once per ray.
    """

    parts: tuple[Tensor, ...]  # each (..., Ve, d_i); the leading dims broadcast against each other
    # Where each part's values sit in the official vector: None = one after the other, in order; else per part a
    # LongTensor of column indices (a part may hold columns that are not next to each other).
    columns: tuple[Tensor, ...] | None = None
    # The first layer's product with columns that are not among the parts, already made (..., Ve, hidden): the
    # sampled features times their weight columns, when the weights were applied to the feature map before
    # sampling (:func:`models.density_field.project_features`). Only the head whose weights made it can read it.
    hidden_offset: Tensor | None = None

    @property
    def width(self) -> int:
        """Columns the parts cover (the whole input width unless ``hidden_offset`` stands for some)."""
        return sum(part.shape[-1] for part in self.parts)

    def part_columns(self) -> tuple[Tensor | slice, ...]:
        if self.columns is not None:
            return self.columns
        starts = [0]
        for part in self.parts:
            starts.append(starts[-1] + part.shape[-1])
        return tuple(slice(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True))

    def view(self, index: int) -> ViewInputs:
        """The parts of encoder view ``index`` alone: each (..., d_i). With one view a squeeze (a view whose
        gradient is a view too, where indexing would scatter the gradient into a new zero tensor)."""
        tensors = (*self.parts, self.hidden_offset) if self.hidden_offset is not None else self.parts
        if all(t.shape[-2] == 1 for t in tensors) and index in (0, -1):
            picked = tuple(t.squeeze(-2) for t in tensors)
        else:
            picked = tuple(t[..., index, :] for t in tensors)
        offset = picked[-1] if self.hidden_offset is not None else None
        return ViewInputs(picked[: len(self.parts)], self.columns, offset)

    def cat(self) -> Tensor:
        """The official vector (..., Ve, D) in one tensor (for heads that need it whole, and for tests)."""
        if self.hidden_offset is not None:
            raise ValueError("inputs with a hidden_offset hold a product, not the vector: query without projection")
        shape = torch.broadcast_shapes(*(part.shape[:-1] for part in self.parts))
        out = self.parts[0].new_empty(*shape, self.width)
        for part, columns in zip(self.parts, self.part_columns(), strict=True):
            out[..., columns] = part.expand(*shape, part.shape[-1])
        return out


def _narrow(t: Tensor, axis: int, start: int, length: int) -> Tensor:
    """Rows ``start:start + length`` of leading dimension ``axis`` (counted from the end of the leading
    dimensions, -1 = last) of a (..., d) tensor; unchanged where that dimension broadcasts (absent or size 1)."""
    dim = t.dim() - 1 + axis
    return t if dim < 0 or t.shape[dim] == 1 else t.narrow(dim, start, length)


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without growing it (a cheap check in Python: it runs
    once per block of :meth:`MLP.forward_blocked`)."""
    aligned = target[len(target) - len(shape) :]  # broadcasting aligns the trailing dimensions
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(shape, aligned, strict=True))


def as_view_inputs(x: Tensor | ViewInputs) -> ViewInputs:
    return x if isinstance(x, ViewInputs) else ViewInputs((x,))


class PartsLinear(nn.Linear):
    """An ``nn.Linear`` that also takes :class:`ViewInputs`: each part times its columns of the weight, summed.

    The same parameters (and state-dict keys) as ``nn.Linear``; only the order of the additions differs from
    multiplying the concatenated vector (float32 rounding, ~1e-7). See :meth:`sum_products`.
    """

    def forward(self, x: Tensor | ViewInputs) -> Tensor:
        if not isinstance(x, ViewInputs):
            return super().forward(x)
        if x.hidden_offset is None and x.width != self.in_features:
            raise ValueError(f"inputs of width {x.width} for a layer of {self.in_features} inputs")
        weights = [self.weight[:, columns] for columns in x.part_columns()]
        return self.sum_products(x.parts, weights, x.hidden_offset)

    def sum_products(self, parts: Sequence[Tensor], weights: Sequence[Tensor], offset: Tensor | None) -> Tensor:
        """``offset`` + the bias + each part times its weight columns (already taken from :attr:`weight`): the
        sum :meth:`forward` makes, for callers that reuse the column slices over many calls.

        Products are made as (rows, hidden) matrices, so the running sum is a tensor of its own, never a view (an
        in-place update of a view makes autograd keep a copy of the whole sum for the backward): a part with a row
        for every row of the sum is added by the matrix product itself, in place (``addmm_``); a shared part (a
        ray's, broadcast over its samples) by an addition, in place only without autograd. The caller's offset is
        never written to."""
        out, bias = offset, self.bias  # the bias goes with the first product made by F.linear
        flat = None  # ``out`` as a (rows, hidden) tensor made here, when it is one
        for part, weight in zip(parts, weights, strict=True):
            rows = part.reshape(-1, part.shape[-1])  # a copy only where F.linear would make one
            same_rows = out is not None and out.shape[:-1] == part.shape[:-1]
            if bias is None and same_rows and out.is_contiguous():
                if flat is None:
                    flat = torch.addmm(out.reshape(-1, out.shape[-1]), rows, weight.t())
                else:
                    flat.addmm_(rows, weight.t())
                out = flat.view(*part.shape[:-1], -1)
                continue
            flat = F.linear(rows, weight, bias)
            bias = None
            term = flat.view(*part.shape[:-1], -1)
            if out is None:
                out = term
            elif not torch.is_grad_enabled() and _broadcasts_to(out.shape, term.shape):
                out = term.add_(out)  # into the new product where it has every row (a + b == b + a exactly)
            else:
                out, flat = out + term, None
        return out


class MLP(nn.Module):
    """Linear -> ReLU -> Linear (official ``ResnetFC`` with zero residual blocks); the first layer takes
    :class:`ViewInputs` parts."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, out_bias: float = 0.0) -> None:
        super().__init__()
        self.hidden = PartsLinear(d_in, d_hidden)
        self.output = nn.Linear(d_hidden, d_out)
        for layer in (self.hidden, self.output):
            nn.init.kaiming_normal_(layer.weight, a=0.0, mode="fan_in")
            nn.init.zeros_(layer.bias)
        nn.init.constant_(self.output.bias, out_bias)

    def forward(self, x: Tensor | ViewInputs) -> Tensor:
        """(..., d_in) -> (..., d_out). Without gradients in blocks of rows (:meth:`forward_blocked`)."""
        if torch.is_grad_enabled():
            return self.output(torch.relu(self.hidden(x)))
        return self.forward_blocked(as_view_inputs(x))

    def forward_blocked(self, x: ViewInputs, block_rows: int = BLOCK_ROWS) -> Tensor:
        """:meth:`forward` about ``block_rows`` points at a time: each block's hidden activations are made, rectified
        in place and read by the output layer while they are still in the cache, where the whole-tensor form
        streams the (points, hidden) activations through memory at every step (a full image is millions of
        points). Parts shared along a dimension (a ray's feature and (u, v) encoding, the same for all its samples)
        are multiplied once, as in the whole form; blocks are cut along the largest leading dimension. The values
        equal the whole form's up to float32 rounding (the sums are made in another order).
        """
        tensors = (*x.parts, x.hidden_offset) if x.hidden_offset is not None else x.parts
        shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
        rows = math.prod(shape)
        per_point = [math.prod(part.shape[:-1]) == rows for part in x.parts]
        if rows <= block_rows or not any(per_point):
            hidden = self.hidden(x)  # new, unless the inputs are a hidden offset alone: never rectify that in place
            return self.output(torch.relu(hidden) if hidden is x.hidden_offset else hidden.relu_())
        # The products without a row per point, made once and handed to every block as part of its hidden offset.
        columns = x.part_columns()
        shared = None
        for part, c, own in zip(x.parts, columns, per_point, strict=True):
            if not own:
                term = F.linear(part, self.hidden.weight[:, c])
                shared = term if shared is None else shared + term
        offsets = [t for t in (shared, x.hidden_offset) if t is not None]
        parts = [p for p, own in zip(x.parts, per_point, strict=True) if own]
        weights = [self.hidden.weight[:, c] for c, own in zip(columns, per_point, strict=True) if own]
        axis = max(range(len(shape)), key=lambda d: shape[d]) - len(shape)  # counted from the end: -1 = last
        step = max(1, block_rows * shape[axis] // rows)
        out = None
        for start in range(0, shape[axis], step):
            n = min(step, shape[axis] - start)
            offset = None
            for term in offsets:
                term = _narrow(term, axis, start, n)
                offset = term if offset is None else offset + term
            hidden = self.hidden.sum_products([_narrow(p, axis, start, n) for p in parts], weights, offset)
            block = self.output(hidden.relu_())  # the sum is a new tensor (a product comes first): rectified in place
            if out is None:
                out = block.new_empty(*shape, block.shape[-1])
            out.narrow(axis - 1, start, n).copy_(block)
        return out


class SingleViewHead(nn.Module):
    """Density from the features of one encoder view (BTS MLP / KDBTS student)."""

    def __init__(self, d_in: int = 103, d_hidden: int = 64, view_index: int = 0, out_bias: float = 0.0) -> None:
        super().__init__()
        self.view_index = view_index
        self.mlp = MLP(d_in, d_hidden, 1, out_bias)

    @property
    def first_layer(self) -> PartsLinear:
        """The layer that reads the view inputs."""
        return self.mlp.hidden

    def forward(self, view_inputs: Tensor | ViewInputs, invalid: Tensor) -> Tensor:
        """view_inputs (..., Ve, D), invalid (..., Ve) -> raw density (...).

        Invalid points are not masked: with ``learn_empty: false`` they keep the border feature.
        """
        return self.mlp(as_view_inputs(view_inputs).view(self.view_index)).squeeze(-1)


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
    """Confidence-weighted fusion over encoder views (official ``MultiViewHead3``). ``out_bias``: the initial
    bias of the raw density (officially 0), as for :class:`SingleViewHead`."""

    def __init__(
        self,
        d_in: int = 103,
        d_hidden: int = 128,
        d_feature: int = 16,
        d_fusion_hidden: int = 16,
        view_dropout: float = 0.0,
        out_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.view_mlp = MLP(d_in, d_hidden, 1 + d_feature)
        self.fusion_mlp = MLP(d_feature, d_fusion_hidden, 1, out_bias)
        self.view_dropout = view_dropout

    @property
    def first_layer(self) -> PartsLinear:
        """The layer that reads the view inputs."""
        return self.view_mlp.hidden

    def per_view(self, view_inputs: Tensor | ViewInputs) -> Tensor:
        """(..., Ve, D) -> (..., Ve, 1 + d_feature): ``[..., 0]`` view logit, ``[..., 1:]`` view feature."""
        return self.view_mlp(as_view_inputs(view_inputs))

    def drop_views(self, invalid: Tensor) -> Tensor:
        """:func:`drop_views` at ``view_dropout`` in training; the identity in eval mode."""
        return drop_views(invalid, self.view_dropout) if self.training else invalid

    def forward(self, view_inputs: Tensor | ViewInputs, invalid: Tensor) -> Tensor:
        """view_inputs (..., Ve, D), invalid (..., Ve) -> raw density (...)."""
        out = self.per_view(view_inputs)  # (..., Ve, 1 + F)
        logits = out[..., 0].masked_fill(self.drop_views(invalid), INVALID_VIEW_LOGIT)  # (..., Ve)
        weights = torch.softmax(logits, dim=-1)  # (..., Ve)
        fused = (weights.unsqueeze(-1) * out[..., 1:]).sum(dim=-2)  # (..., F)
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

    def forward(self, view_inputs: Tensor | ViewInputs, invalid: Tensor) -> Tensor:
        """view_inputs (..., Ve, D), invalid (..., Ve) -> raw density (...)."""
        view_inputs = as_view_inputs(view_inputs).cat()
        invalid = invalid.expand(view_inputs.shape[:-1])
        *lead, Ve, D = view_inputs.shape
        view_inputs, invalid = view_inputs.reshape(1, -1, Ve, D), invalid.reshape(1, -1, Ve)
        B, N = view_inputs.shape[:2]
        if self.training:
            invalid = drop_views(invalid, self.view_dropout)
        tokens = self.embed(view_inputs) + self.embed_skip(view_inputs)  # (B, N, Ve, d)
        tokens = tokens.reshape(B * N, Ve, -1)
        tokens = torch.cat([self.readout_token.expand(B * N, 1, -1), tokens], dim=1)  # (BN, 1 + Ve, d)
        mask = torch.cat([invalid.new_zeros(B, N, 1), invalid], dim=-1).reshape(B * N, 1 + Ve)  # True = ignore
        out = self.transformer(tokens, src_key_padding_mask=mask)  # (BN, 1 + Ve, d)
        return self.output(out[:, 0]).reshape(lead)
