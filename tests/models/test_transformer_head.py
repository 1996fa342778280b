"""The transformer fusion head ("DFT"): masked views are ignored, all-invalid points fall back to the token,
view dropout never touches view 0, and the training config can select it."""

from __future__ import annotations

import torch

from models.heads import TransformerFusionHead, drop_views


def _inputs(seed: int, views: int = 3, n: int = 40) -> torch.Tensor:
    return torch.randn(2, n, views, 103, generator=torch.Generator().manual_seed(seed))


def _head() -> TransformerFusionHead:
    torch.manual_seed(0)
    return TransformerFusionHead().eval()


@torch.no_grad()
def test_masked_views_do_not_change_the_output():
    head = _head()
    x, other = _inputs(1), _inputs(2)
    invalid = torch.zeros(2, 40, 3, dtype=torch.bool)
    invalid[..., 2] = True
    changed = x.clone()
    changed[..., 2, :] = other[..., 2, :]  # only the masked view differs
    torch.testing.assert_close(head(x, invalid), head(changed, invalid))
    changed[..., 1, :] = other[..., 1, :]  # a valid view differs: the output must move
    assert (head(x, invalid) - head(changed, invalid)).abs().max() > 1e-4


@torch.no_grad()
def test_one_valid_view_equals_running_on_that_view_alone():
    head = _head()
    x = _inputs(3)
    invalid = torch.ones(2, 40, 3, dtype=torch.bool)
    invalid[..., 0] = False
    alone = head(x[..., :1, :], torch.zeros(2, 40, 1, dtype=torch.bool))
    torch.testing.assert_close(head(x, invalid), alone, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_all_views_invalid_gives_the_read_out_tokens_own_output():
    head = _head()
    invalid = torch.ones(2, 40, 3, dtype=torch.bool)
    a, b = head(_inputs(4), invalid), head(_inputs(5), invalid)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b)  # nothing from the views gets through
    assert torch.allclose(a, a[0, 0])  # the same value for every point


def test_gradients_reach_every_parameter():
    head = TransformerFusionHead().train()
    head(_inputs(6), torch.zeros(2, 40, 3, dtype=torch.bool)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_view_dropout_never_drops_view_0():
    invalid = torch.zeros(1, 5000, 4, dtype=torch.bool)
    assert not drop_views(invalid, 1.0)[..., 0].any() and drop_views(invalid, 1.0)[..., 1:].all()
    dropped = drop_views(invalid, 0.5)
    assert not dropped[..., 0].any() and 0.45 < dropped[..., 1:].float().mean() < 0.55
    assert torch.equal(drop_views(invalid, 0.0), invalid)
    head = TransformerFusionHead(view_dropout=1.0).eval()  # eval mode: no dropout
    x = _inputs(7)
    valid = torch.zeros(2, 40, 3, dtype=torch.bool)
    with torch.no_grad():
        assert (head(x, valid) - head(x, valid | torch.tensor([False, True, True]))).abs().max() > 1e-4
