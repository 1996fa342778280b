"""scripts/benchmark.py at the tiny size: one isolated process per case, JSON and table out."""

from __future__ import annotations

import json
import math

import pytest

from models.encoder import resolve_channels_last
from scripts.benchmark import SIZES, Case, build_overrides, compare_row, main, make_batch
from utils.config import compose_config


def test_tiny_benchmark_writes_json_and_a_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--sizes", "tiny", "--iters", "2", "--warmup", "1", "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["machine"]["device"] == "cpu" and report["machine"]["torch"]
    assert [r["case"]["model"] for r in report["results"]] == ["bts", "mvbts", "kdbts"]
    result = report["results"][0]
    assert result["case"] == {
        "model": "bts",
        "size": "tiny",
        "device": "cpu",
        "batch_size": 1,
        "bf16": False,
        "warmup": 1,
        "iters": 2,
        "channels_last": "auto",
        "compile": False,
        "encoder_views": None,
    }
    assert result["extra"]["channels_last"] is resolve_channels_last("auto")  # the layout the run used
    # an NHWC run also times the float32 NCHW trunk, the floor of the official code's step
    assert ("trunk_reference_s" in result["extra"]) is result["extra"]["channels_last"]
    if result["extra"]["channels_last"]:
        assert result["extra"]["trunk_reference_s"] > 0
    assert len(result["train_step_s_all"]) == 2
    # The trunk is timed on its own: a positive, finite time. Not compared with the step: two medians of two
    # iterations at the tiny size are noise on a shared CPU (a CI run measured the trunk 0.284 s, the step 0.247 s).
    assert math.isfinite(result["trunk_s"]) and result["trunk_s"] > 0  # not 0, NaN or inf: it was timed
    assert min(result["train_step_s_all"]) <= result["train_step_s_median"] <= max(result["train_step_s_all"])
    assert result["render_image_s"] > 0 and result["gen_img_custom_s"] > 0
    assert result["memory_kind"] == "cpu_peak_rss" and result["peak_memory_mb"] >= result["baseline_rss_mb"] > 0
    assert result["parameters"] > 10_000_000  # ResNet-18 trunk + decoder + head
    bts, mvbts, kdbts = (r["parameters"] for r in report["results"])
    assert bts < kdbts and mvbts < kdbts  # KDBTS = MVBTS teacher + the BTS-sized student head on one encoder
    printed = capsys.readouterr().out
    assert "bts     tiny" in printed and "kdbts   tiny" in printed


def test_the_made_up_batch_has_the_kitti_360_view_layout():
    import torch

    batch = make_batch(2, SIZES["tiny"].image_size, torch.Generator().manual_seed(0))
    assert batch.images.shape == (2, 8, 3, 64, 128)
    assert batch.images.min() >= -1 and batch.images.max() <= 1
    # view 2 is the right camera at t: one 0.6 m baseline along +x; view 1 is the left camera one frame later
    assert batch.cam_to_world[0, 2, :3, 3].tolist() == pytest.approx([0.6, 0.0, 0.0])
    assert batch.cam_to_world[0, 1, :3, 3].tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="CUDA is not available"):
        main(["--device", "cuda", "--sizes", "tiny"])


def test_loader_and_eval_figures_on_the_synthetic_world(synthetic_root, tmp_path):
    out = tmp_path / "bench.json"
    main(
        [
            "--skip-train",
            "--sizes",
            "tiny",
            "--data-root",
            str(synthetic_root),
            "--loader-samples",
            "2",
            "--loader-workers",
            "0",
            "--eval-frames",
            "1",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["results"] == []
    loader = report["loader"]
    assert loader["on_the_fly_samples_per_s"] > 0
    # The session's world has no preprocessed cache at this size: a note instead of a number.
    assert loader["cache_samples_per_s"] is None and loader["cache_note"]
    ev = report["eval"]
    for key in ("occupancy_cold", "occupancy_warm", "depth_cold", "depth_warm"):
        assert ev[f"{key}_s"] > 0 and ev[f"{key}_frames_per_s"] == pytest.approx(1 / ev[f"{key}_s"])
    assert ev["occupancy_warm_speedup"] == pytest.approx(ev["occupancy_cold_s"] / ev["occupancy_warm_s"])
    assert ev["depth_warm_speedup"] == pytest.approx(ev["depth_cold_s"] / ev["depth_warm_s"])


def test_the_official_size_times_the_real_training_configs():
    """No ray-batch override: BTS trains on 4096 rays (64 patches), MVBTS / KDBTS on 2048; views as asked."""
    for config, rays in (("train_kitti_360_bts", 4096), ("train_kitti_360_base", 2048), ("train_kitti_360_KD", 2048)):
        cfg = compose_config(config, build_overrides(SIZES["official"], 1, "auto", None))
        assert (cfg.model.ray_batch_size, cfg.model.samples_per_ray, cfg.model.field.encoder.resnet_layers) == (
            rays,
            64,
            50,
        )
    two_views = compose_config("train_kitti_360_KD", build_overrides(SIZES["official"], 1, "auto", 2))
    assert two_views.model.num_multiviews == 2


def test_compare_rows_are_medians_and_old_over_new_ratios():
    case = Case("bts", "tiny", "cpu", 1, False, 1, 1)
    keys = ("train_step_s_median", "render_image_s", "gen_img_custom_s", "peak_memory_mb")
    old = [{**dict.fromkeys(keys, v), "train_step_s_all": [v, v + 1]} for v in (4.0, 6.0, 5.0)]
    new = [
        {**dict.fromkeys(keys, v), "trunk_s": 1.0, "extra": {"host_memory": "reuse"}, "train_step_s_all": [v]}
        for v in (2.0, 2.5, 3.0)
    ]
    row = compare_row(case, "abc123", old, new)
    assert (row["old_train_step_s_median"], row["new_train_step_s_median"]) == (5.0, 2.5)
    # which allocator each side ran with: the old one as the C library comes, unless asked otherwise
    assert (row["old_host_memory"], row["new_host_memory"]) == ("system", "reuse")
    assert compare_row(case, "abc123", old, new, old_host_memory="reuse")["old_host_memory"] == "reuse"
    # a revision that reports its own setting is taken at its word
    reported = [{**r, "extra": {"host_memory": "system"}} for r in old]
    assert compare_row(case, "abc123", reported, new, old_host_memory="reuse")["old_host_memory"] == "system"
    # every timed step is kept, round by round (the spread behind the medians)
    assert row["old_train_step_s_all"] == [[4.0, 5.0], [6.0, 7.0], [5.0, 6.0]]
    assert row["new_train_step_s_all"] == [[2.0], [2.5], [3.0]]
    assert row["ratio_train_step_s_median"] == 2.0 and row["ratio_render_image_s"] == 2.0
    # the encoder's own time is taken off both sides: (5 - 1) / (2.5 - 1)
    assert row["ratio_rest"] == pytest.approx(4.0 / 1.5)
    # With a bf16 or NHWC trunk on the new side, the old (float32 NCHW) side loses its own trunk: the new side's
    # float32 NCHW reference one, or the old revision's own trunk_s when it reports one.
    bf16 = [{**r, "trunk_s": 0.5, "extra": {"trunk_reference_s": 1.0, "host_memory": "reuse"}} for r in new]
    row = compare_row(case, "abc123", old, bf16)
    assert (row["old_rest_s"], row["new_rest_s"]) == (4.0, 2.0)
    row = compare_row(case, "abc123", [{**r, "trunk_s": 2.0} for r in old], bf16)
    assert (row["old_trunk_s"], row["old_rest_s"]) == (2.0, 3.0)


@pytest.mark.parametrize("old_host_memory", ["system", "reuse"])
def test_compare_times_a_recent_revision_too(old_host_memory):
    """--compare checks the other revision out and runs its run_case with this benchmark's config: also for a
    revision whose run_case builds the optimizer from the config (HEAD, here), not only for the old reference."""
    from scripts.benchmark import compare

    case = Case(model="bts", size="tiny", device="cpu", batch_size=1, bf16=False, warmup=0, iters=1)
    (row,) = compare("HEAD", [case], rounds=1, old_host_memory=old_host_memory)
    assert row["revision"] == "HEAD" and row["rounds"] == 1
    # HEAD reports its own setting: the one asked for reached it (system through the environment, though the
    # default is reuse; reuse also through this tree's module, which revisions from before it lack)
    assert (row["old_host_memory"], row["new_host_memory"]) == (old_host_memory, "reuse")
    for key in ("train_step_s_median", "render_image_s", "gen_img_custom_s"):
        assert row[f"old_{key}"] > 0 and row[f"new_{key}"] > 0
        assert row[f"ratio_{key}"] == row[f"old_{key}"] / row[f"new_{key}"]
