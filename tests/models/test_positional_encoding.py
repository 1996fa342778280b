"""Inverse-depth code and positional encoding on hand-computed values."""

import math

import pytest
import torch

from models.density_field import inverse_depth_code
from models.positional_encoding import encoded_dim, encoding_constants, positional_encoding


def test_inverse_depth_code_hand_values():
    z = torch.tensor([3.0, 80.0, 6.0, 1e-4, -2.0], dtype=torch.float64)
    code = inverse_depth_code(z, z_near=3.0, z_far=80.0)
    scale = 1.0 / 3.0 - 1.0 / 80.0
    expected = [
        1.0,  # near -> +1
        -1.0,  # far -> -1
        2.0 * (1.0 / 6.0 - 1.0 / 80.0) / scale - 1.0,  # = 2 * 37/77 - 1 = -3/77
        2.0 * (1e3 - 1.0 / 80.0) / scale - 1.0,  # clamped at 1e-3: ~6233 (official quirk)
        2.0 * (1e3 - 1.0 / 80.0) / scale - 1.0,  # behind the camera: clamped too
    ]
    assert code.tolist() == pytest.approx(expected, rel=1e-12)
    assert code[2].item() == pytest.approx(-3.0 / 77.0, rel=1e-12)
    assert code[3].item() == pytest.approx(479917.0 / 77.0, rel=1e-12)  # 6232.69


def test_constants_match_official_buffers():
    freqs, phases = encoding_constants(6, 1.5)
    assert freqs.tolist() == [1.5, 1.5, 3.0, 3.0, 6.0, 6.0, 12.0, 12.0, 24.0, 24.0, 48.0, 48.0]
    assert phases.dtype == torch.float32
    assert phases[1::2].tolist() == [torch.tensor(math.pi / 2, dtype=torch.float32).item()] * 6
    assert phases[0::2].tolist() == [0.0] * 6


def test_encoding_layout_hand_values():
    x = torch.tensor([0.5, -0.25, 1.0], dtype=torch.float64)
    out = positional_encoding(x, num_freqs=6, freq_factor=1.5, include_input=True)
    assert out.shape == (39,) and encoded_dim(3, 6) == 39
    assert out[:3].tolist() == x.tolist()
    for k, f in enumerate([1.5, 3.0, 6.0, 12.0, 24.0, 48.0]):
        block = out[3 + 6 * k : 9 + 6 * k]
        # (u, v, z~) sines, then (u, v, z~) cosines; cos via sin(x + float32(pi/2)) differs from cos by <1e-7.
        assert block[:3].tolist() == pytest.approx([math.sin(f * c) for c in x.tolist()], abs=1e-12)
        assert block[3:].tolist() == pytest.approx([math.cos(f * c) for c in x.tolist()], abs=1e-7)
    # Hand value: sin(1.5 * 0.5) = sin(0.75) = 0.68163876.
    assert out[3].item() == pytest.approx(0.6816387600233341, abs=1e-12)


def test_cosine_uses_float32_half_pi_phase():
    x = torch.tensor([[0.3, -0.7, 2.0]], dtype=torch.float32)
    out = positional_encoding(x)
    half_pi = torch.tensor(math.pi / 2, dtype=torch.float32)
    expected = torch.sin(torch.addcmul(half_pi.expand(3), x[0], torch.tensor(48.0)))
    assert torch.equal(out[0, -3:], expected)


def test_batched_shapes():
    x = torch.randn(2, 3, 5, 3)
    assert positional_encoding(x).shape == (2, 3, 5, 39)
    assert positional_encoding(x, include_input=False).shape == (2, 3, 5, 36)
