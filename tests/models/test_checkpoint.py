"""Official-checkpoint loading: architecture detection, explicit key mapping, and loud failures."""

import pytest
import torch
import torchvision

from models.checkpoint import (
    BACKBONE,
    CheckpointError,
    convert_official_state_dict,
    detect_architecture,
    load_official_checkpoint,
    load_state_dict_exact,
    read_official_checkpoint,
)
from tests.builders import BTS, KDBTS, NO_VIEW_DROPOUT, build_field
from tests.golden import official_checkpoint


@pytest.fixture(scope="module")
def bts_official():
    return read_official_checkpoint(official_checkpoint("bts_r18.pt"))


@pytest.fixture(scope="module")
def bts_field():
    return build_field(BTS)


def save(tmp_path, state_dict, **extra):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": state_dict, **extra}, path)
    return path


def test_detects_bts_and_mvbts():
    bts = detect_architecture(read_official_checkpoint(official_checkpoint("bts_r18.pt")))
    mvbts = detect_architecture(read_official_checkpoint(official_checkpoint("mvbts_r18.pt")))
    assert bts.describe() == "ResNet-18 BTS (heads: mlp_coarse)"
    assert mvbts.resnet_layers == 18 and mvbts.kind == "MVBTS + KDBTS student"


@pytest.mark.parametrize("depth", [34, 50])
def test_detects_resnet_depth_from_keys(depth):
    resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    official = {BACKBONE + k: v for k, v in resnet.state_dict().items()}
    official["renderer.net.mlp_coarse.lin_in.weight"] = torch.zeros(64, 103)
    assert detect_architecture(official).resnet_layers == depth


def test_conversion_upcasts_and_drops_constant_buffers(bts_official, bts_field):
    converted = convert_official_state_dict(bts_official)
    assert set(converted) == set(bts_field.state_dict())
    assert all(v.dtype in (torch.float32, torch.int64) for v in converted.values())
    key = "renderer.net.encoder.decoder.decoder.0.conv.conv.weight"
    assert torch.equal(converted["encoder.decoder.stages.4.reduce.conv.weight"], bts_official[key].float())
    key = "renderer.net.encoder.decoder.decoder.10.conv.bias"
    assert torch.equal(converted["encoder.decoder.output_convs.0.conv.bias"], bts_official[key].float())


def test_training_checkpoint_entries_are_ignored(tmp_path, bts_official):
    path = save(tmp_path, bts_official, trainer={"iteration": 3}, optimizer={}, lr_scheduler={})
    load_official_checkpoint(build_field(BTS), path)


def test_removed_key_is_listed(tmp_path, bts_official, bts_field):
    removed = "renderer.net.encoder.decoder.decoder.7.conv.conv.bias"
    path = save(tmp_path, {k: v for k, v in bts_official.items() if k != removed})
    with pytest.raises(CheckpointError, match="missing keys") as info:
        load_official_checkpoint(bts_field, path)
    assert "encoder.decoder.stages.1.fuse.conv.bias" in str(info.value)


def test_extra_key_is_listed(tmp_path, bts_official, bts_field):
    extra = "renderer.net.empty_feature"
    path = save(tmp_path, {**bts_official, extra: torch.zeros(64)})
    with pytest.raises(CheckpointError, match="no mapping") as info:
        load_official_checkpoint(bts_field, path)
    assert extra in str(info.value)


def test_extra_key_in_our_layout_is_listed(bts_official, bts_field):
    converted = convert_official_state_dict(bts_official)
    converted["heads.single_view.mlp.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys") as info:
        load_state_dict_exact(bts_field, converted)
    assert "heads.single_view.mlp.extra.weight" in str(info.value)


def test_shape_mismatch_is_listed(tmp_path, bts_official, bts_field):
    key = "renderer.net.mlp_coarse.lin_in.weight"
    path = save(tmp_path, {**bts_official, key: torch.zeros(128, 103, dtype=torch.float16)})
    with pytest.raises(CheckpointError, match="shape mismatches") as info:
        load_official_checkpoint(bts_field, path)
    assert "heads.single_view.mlp.hidden.weight: checkpoint (128, 103) vs model (64, 103)" in str(info.value)


def test_resnet18_checkpoint_into_resnet50_model_names_both():
    field = build_field(BTS, "model.field.encoder.resnet_layers=50")
    with pytest.raises(CheckpointError, match="holds a ResNet-18 BTS .* configured as ResNet-50"):
        load_official_checkpoint(field, official_checkpoint("bts_r18.pt"))


def test_mvbts_checkpoint_into_bts_model_names_both():
    field = build_field(BTS)
    with pytest.raises(CheckpointError, match="MVBTS \\+ KDBTS student .* heads: single_view"):
        load_official_checkpoint(field, official_checkpoint("mvbts_r18.pt"))


def test_new_student_can_be_left_at_init_only_when_named(tmp_path):
    official = read_official_checkpoint(official_checkpoint("mvbts_r18.pt"))
    teacher_only = {k: v for k, v in official.items() if "singleviewhead" not in k}
    path = save(tmp_path, teacher_only)
    field = build_field(KDBTS, NO_VIEW_DROPOUT)
    with pytest.raises(CheckpointError):
        load_official_checkpoint(field, path)
    init = field.heads["single_view"].mlp.hidden.weight.clone()
    load_official_checkpoint(field, path, allow_missing_prefixes=("heads.single_view.",))
    assert torch.equal(field.heads["single_view"].mlp.hidden.weight, init)
    expected = official["renderer.net.heads.multiviewhead3.mlp2.lin_out.bias"].float()
    assert torch.equal(field.heads["multi_view"].fusion_mlp.output.bias, expected)


def test_pe_buffer_mismatch_is_an_error(bts_official):
    with pytest.raises(CheckpointError, match="_freqs"):
        convert_official_state_dict(bts_official, num_freqs=4)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="expected a dict with 'model'"):
        read_official_checkpoint(path)
