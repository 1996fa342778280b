"""NeRF positional encoding of the projected point code (u, v, z~) (REFERENCE 2.2).

The encoded vector is the input itself followed by, for each frequency ``f`` in
``freq_factor * 2**k`` (k = 0..num_freqs-1): ``sin(f x)`` for every input channel, then ``cos(f x)`` for
every input channel. With 3 inputs, 6 frequencies and the input included that is 3 + 3*2*6 = 39 values.

The official code computes ``cos(x)`` as ``sin(x + pi/2)`` with pi/2 rounded to float32, and the
checkpoints were trained with it, so the same formula is used here (decision 1); it differs from
``torch.cos`` by a few 1e-8 at low frequency and more at the high ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def encoding_constants(num_freqs: int, freq_factor: float) -> tuple[Tensor, Tensor]:
    """Per-row frequencies and phases, each (2 * num_freqs,) float32.

    Row ``2k`` is ``sin(f_k x)`` (phase 0), row ``2k + 1`` is ``cos(f_k x) = sin(f_k x + pi/2)``.
    These are the values of the official constant buffers ``code_xyz._freqs`` / ``_phases``.
    """
    freqs = freq_factor * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
    freqs = freqs.repeat_interleave(2)
    phases = torch.zeros(2 * num_freqs, dtype=torch.float32)
    phases[1::2] = math.pi * 0.5
    return freqs, phases


def encoded_dim(d_in: int, num_freqs: int, include_input: bool = True) -> int:
    """Size of the encoding of a ``d_in``-dimensional input."""
    return d_in * 2 * num_freqs + (d_in if include_input else 0)


def positional_encoding(x: Tensor, num_freqs: int = 6, freq_factor: float = 1.5, include_input: bool = True) -> Tensor:
    """Encode ``x`` (..., D) -> (..., D * (2 * num_freqs + include_input)).

    Layout: ``[x, sin(f0 x), cos(f0 x), sin(f1 x), cos(f1 x), ...]``, each block D wide.
    """
    freqs, phases = encoding_constants(num_freqs, freq_factor)
    freqs = freqs.to(device=x.device, dtype=x.dtype)[:, None]  # (2F, 1)
    phases = phases.to(device=x.device, dtype=x.dtype)[:, None]  # (2F, 1)
    # phase + x * f in one addcmul, as the reference does, so that high-frequency terms round alike.
    angles = torch.addcmul(phases, x.unsqueeze(-2), freqs)  # (..., 2F, D)
    encoded = torch.sin(angles).flatten(-2)  # (..., 2F * D)
    return torch.cat([x, encoded], dim=-1) if include_input else encoded
