"""The debug overlay trains on the synthetic world in the KITTI-360 format."""

from __future__ import annotations

from utils.checkpoints import read_checkpoint, rolling_checkpoints
from utils.config import compose_config
from utils.training.train import train


def test_debug_run_on_the_synthetic_world(synthetic_root, tmp_path):
    out = tmp_path / "run"
    cfg = compose_config(
        "train_synthetic_bts",
        [
            "debug=default",
            f"data.data_path={synthetic_root / 'KITTI-360'}",
            "data.val.length=1",
            "trainer.max_iters=2",
            f"trainer.output_dir={out}",
        ],
    )
    train(cfg)
    assert [p.name for p in rolling_checkpoints(out)] == ["training_checkpoint_2.pt"]
    assert read_checkpoint(out / "training_checkpoint_2.pt")["trainer"]["iteration"] == 2
    assert list(out.glob("events.out.tfevents.*"))
    assert list(out.glob("best_checkpoint_2_abs_rel_*.pt"))
