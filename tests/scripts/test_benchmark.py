"""scripts/benchmark.py at the tiny size: one isolated process per case, JSON and table out."""

from __future__ import annotations

import json

import pytest

from scripts.benchmark import SIZES, main, make_batch


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
        "channels_last": False,
        "compile": False,
    }
    assert len(result["train_step_s_all"]) == 2
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
