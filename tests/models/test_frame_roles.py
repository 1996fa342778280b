"""Frame roles: which views are encoder inputs, colour sources and reconstruction targets (REFERENCE 3.4, 5.4)."""

import pytest
import torch

from models.frame_roles import choose_encoder_ids, choose_frame_roles


def test_kitti360_mono_roles_alternate_per_camera():
    seen = set()
    for seed in range(20):
        roles = choose_frame_roles("kitti360-mono", 8, generator=torch.Generator().manual_seed(seed))
        seen.add((roles.loss_ids, roles.render_ids))
        assert roles.encoder_ids == (0,)
    assert seen == {((0, 3, 4, 7), (1, 2, 5, 6)), ((1, 2, 5, 6), (0, 3, 4, 7))}


def test_default_roles_split_four_views_in_half():
    seen = set()
    for seed in range(30):
        gen = torch.Generator().manual_seed(seed)
        roles = choose_frame_roles("default", 4, generator=gen)
        again = choose_frame_roles("default", 4, generator=torch.Generator().manual_seed(seed))
        assert roles == again
        assert len(roles.render_ids) == len(roles.loss_ids) == 2
        assert sorted(roles.render_ids + roles.loss_ids) == [0, 1, 2, 3]
        seen.add(roles.render_ids)
    assert len(seen) == 6  # every pair of render frames occurs


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="frame sample mode"):
        choose_frame_roles("stereo", 4)  # type: ignore[arg-type]


def test_encoder_ids_by_style():
    gen = torch.Generator().manual_seed(0)
    assert choose_encoder_ids("mono", 8) == (0,)
    assert choose_encoder_ids("default", 8, 3) == (0, 1, 2)
    for _ in range(10):
        stereo = choose_encoder_ids("stereo", 8, 3, gen)
        assert stereo[0] == 0 and len(set(stereo)) == 3 and set(stereo[1:]) <= {1, 2, 3}
        rand = choose_encoder_ids("random", 8, 2, gen)
        assert rand[0] == 0 and len(rand) == 2 and 1 <= rand[1] <= 7
