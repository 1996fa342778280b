"""One loading path: our checkpoints rebuild the model from their stored run config."""

import pytest
import torch
from omegaconf import OmegaConf

from models.checkpoint import CheckpointError
from tests.builders import SMALL
from tests.golden import official_checkpoint
from utils.checkpoints import MissingCheckpointError, load_model
from utils.config import compose_config as compose_eval


def test_our_checkpoint_rebuilds_the_stored_model(tmp_path):
    run_cfg = compose_eval("eval_lidar_occ_bts", [*list(SMALL), "model.field.heads.single_view.d_hidden=32"])
    trained, _, _, _ = load_model(run_cfg.model, None, allow_random_weights=True, use_checkpoint_config=False)
    path = tmp_path / "training_checkpoint_3.pt"
    torch.save({"model": trained.state_dict(), "config": OmegaConf.to_yaml(run_cfg)}, path)

    eval_cfg = compose_eval("eval_lidar_occ_bts", list(SMALL))  # d_hidden 64 in the eval config
    model, used, stored, source = load_model(
        eval_cfg.model, path, allow_random_weights=False, use_checkpoint_config=True
    )
    assert source == path  # the file read; a run directory says which file it resolved to
    assert load_model(eval_cfg.model, tmp_path, False, True).source == path
    assert used.field.heads.single_view.d_hidden == 32
    assert stored == run_cfg  # the whole stored run configuration comes back, read with the weights
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values(), strict=True)
    )
    with pytest.raises(CheckpointError):  # the eval config's own model does not fit: strict, never silent
        load_model(eval_cfg.model, path, allow_random_weights=False, use_checkpoint_config=False)


def test_no_checkpoint_needs_the_explicit_flag():
    cfg = compose_eval("eval_lidar_occ_bts", list(SMALL))
    with pytest.raises(MissingCheckpointError):
        load_model(cfg.model, None, allow_random_weights=False, use_checkpoint_config=True)


def test_a_run_directory_resolves_to_its_best_then_newest_checkpoint(tmp_path):
    import pytest

    from utils.checkpoints import resolve_checkpoint

    for name in ("training_checkpoint_2.pt", "training_checkpoint_10.pt"):
        (tmp_path / name).write_bytes(b"x")
    assert resolve_checkpoint(tmp_path).name == "training_checkpoint_10.pt"
    for name in ("best_checkpoint_4_abs_rel_0.3000.pt", "best_checkpoint_8_abs_rel_0.2500.pt"):
        (tmp_path / name).write_bytes(b"x")
    assert resolve_checkpoint(tmp_path).name == "best_checkpoint_8_abs_rel_0.2500.pt"
    assert resolve_checkpoint(tmp_path / "training_checkpoint_2.pt").name == "training_checkpoint_2.pt"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no best_checkpoint"):
        resolve_checkpoint(empty)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "missing.pt")


def test_an_official_checkpoint_sets_the_resnet_depth(caplog):
    """The official R18 file evaluated with the ResNet-50 eval config and no override: the checkpoint decides."""
    cfg = compose_eval("eval_lidar_occ_bts")
    assert cfg.model.field.encoder.resnet_layers == 50
    with caplog.at_level("INFO"):
        model, used, stored, _ = load_model(cfg.model, official_checkpoint("bts_r18.pt"), False, True)
    assert used.field.encoder.resnet_layers == 18 and model.field.encoder.resnet_layers == 18
    assert stored is None  # official files carry no run configuration
    assert used.field.encoder.pretrained is False  # the checkpoint overwrites every weight: no ImageNet download
    assert "holds a ResNet-18 encoder" in caplog.text
    official = torch.load(official_checkpoint("bts_r18.pt"), map_location="cpu", weights_only=True)["model"]
    torch.testing.assert_close(
        model.field.heads.single_view.mlp.output.weight, official["renderer.net.mlp_coarse.lin_out.weight"].float()
    )
