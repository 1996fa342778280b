"""The training study (scripts/study.py) on the small synthetic world of the test session, at tiny size."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datasets.sample import collate
from models.field_output import FieldOutput
from scripts.study import (
    LANDSCAPE_FIELDS,
    OPAQUE,
    OVERFIT_MARGIN,
    VARIANTS,
    _landscape_field,
    final_row,
    landscape_choices,
    landscape_table,
    main,
    objective_landscape,
    observability,
)
from utils.checkpoints import load_model, read_checkpoint, stored_run_config
from utils.config import compose_config


@pytest.fixture(scope="module")
def world(synthetic_root, tmp_path_factory):
    copy = tmp_path_factory.mktemp("study") / "world"
    shutil.copytree(synthetic_root, copy)  # the study adds a loader cache
    return copy


def test_every_variant_composes_with_the_training_config(world):
    from scripts.demo import BUDGETS, budget_overrides

    for variant in VARIANTS.values():
        cfg = compose_config("train_synthetic_bts", [*budget_overrides(world, BUDGETS["demo"]), *variant.overrides])
        assert cfg.model.samples_per_ray == (variant.samples or BUDGETS["demo"].samples)
    bias = compose_config("train_synthetic_bts", VARIANTS["bias_+2"].overrides)
    assert bias.model.field.heads.single_view.out_bias == 2.0
    # the resizing a variant trains on (and is scored on) follows its overrides, --set ones included
    assert VARIANTS["baseline"].antialias is None and VARIANTS["baseline"].data_overrides == ()
    assert VARIANTS["aliased"].antialias is False
    assert compose_config("train_synthetic_bts", VARIANTS["aliased"].overrides).data.train.antialias is False
    again = replace(VARIANTS["aliased"], overrides=(*VARIANTS["aliased"].overrides, "data.antialias=true"))
    assert again.antialias is True and again.data_overrides == ("data.antialias=true",)


def test_variants_train_score_and_plot(world, tmp_path):
    runs, media = tmp_path / "runs", tmp_path / "media"
    argv = ["--world", str(world), "--runs", str(runs), "--media", str(media), "--budget", "tiny", "--device", "cpu"]
    argv += ["--iters", "2", "--eval-every", "1", "--workers", "1"]
    results = main([*argv, "--variants", "baseline", "bias_+2"])
    for name in ("baseline", "bias_+2"):
        (run,) = results[name]["runs"]
        assert sorted(run["scores"], key=int) == ["1", "2"]  # a checkpoint per --eval-every, each scored
        assert [step for step, _ in run["val_abs_rel"]] == [0, 1, 2]  # the untrained validation comes first
        assert run["loss"] and all(value > 0 for _, value in run["loss"])
        scores = run["scores"]["2"]
        assert 0.0 <= scores["analytic/model/o_acc"] <= 1.0
        assert scores["analytic/empty/o_auroc"] == 0.5
        assert 0.0 <= final_row(results[name]["runs"])["O_acc"] <= 1.0
    # The initial bias shows in the first step's densities: sigma = softplus(2) = 2.13 nearly everywhere.
    assert results["bias_+2"]["runs"][0]["scores"]["1"]["analytic/model/ie_rec"] < 0.5
    table = (media / "study.md").read_text()
    assert table.startswith("| variant | change |") and "| bias_+2 |" in table
    assert (media / "study_head.png").stat().st_size > 10_000 and (media / "study_baseline.png").is_file()
    # A rerun finds everything done and answers the same.
    again = main([*argv, "--variants", "baseline"])
    assert json.dumps(again["baseline"], sort_keys=True) == json.dumps(results["baseline"], sort_keys=True)


def test_tagged_variants_are_drawn_against_the_baseline_of_their_tag(world, tmp_path, monkeypatch):
    """With ``--set ... --tag T`` every variant is renamed ``<name>+T``; its group's plot must show the baseline
    trained with the same overrides (``baseline+T``), not an untagged one or none. A group holding runs of several
    tags (the study accumulates them in one media folder) shows the baseline of each."""
    import scripts.study as study

    drawn = {}
    monkeypatch.setattr(study, "plot_group", lambda path, title, entries, scored_on: drawn.update({title: entries}))
    argv = ["--world", str(world), "--runs", str(tmp_path / "runs"), "--media", str(tmp_path / "media")]
    argv += ["--budget", "tiny", "--device", "cpu", "--iters", "1", "--eval-every", "1", "--workers", "1"]
    main([*argv, "--variants", "baseline", "bias_+2", "--set", "model.ray_batch_size=128", "--tag", "r128"])
    assert sorted(drawn["study: head"]) == ["baseline+r128", "bias_+2+r128"]
    assert sorted(drawn["study: baseline"]) == ["baseline+r128"]
    main([*argv, "--variants", "bias_+2"])  # untagged, into the same media folder: no untagged baseline yet
    assert sorted(drawn["study: head"]) == ["baseline+r128", "bias_+2", "bias_+2+r128"]
    main([*argv, "--variants", "baseline"])
    assert sorted(drawn["study: head"]) == ["baseline", "baseline+r128", "bias_+2", "bias_+2+r128"]
    # entries written before the tag was recorded count as untagged, and are written back with it
    record = tmp_path / "media" / "study.json"
    record.write_text(
        json.dumps({k: {f: v for f, v in e.items() if f != "tag"} for k, e in json.loads(record.read_text()).items()})
    )
    main([*argv, "--variants", "baseline"])
    assert sorted(drawn["study: head"]) == ["baseline", "bias_+2", "bias_+2+r128"]
    assert {e["tag"] for e in json.loads(record.read_text()).values()} == {""}


def test_overfit_scores_the_frames_it_trains_on(world, tmp_path):
    runs, media = tmp_path / "runs", tmp_path / "media"
    argv = ["--world", str(world), "--runs", str(runs), "--media", str(media), "--budget", "tiny", "--device", "cpu"]
    results = main([*argv, "--overfit", "--overfit-frames", "2", "--iters", "2", "--eval-every", "2"])
    split = (runs / "overfit_2x0_files.txt").read_text().splitlines()
    assert len(split) == 2 and all(line.endswith(" l") for line in split)
    train = (world / "KITTI-360/splits/train_files.txt").read_text().splitlines()
    assert set(split) <= set(train)
    stored = OmegaConf.create(read_checkpoint(runs / "overfit/seed0/training_checkpoint_2.pt")["config"])
    assert stored.data.train.split_path == str(runs / "overfit_2x0_files.txt")  # trained on those frames only
    assert not stored.data.train.color_aug and stored.model.flip_p == 0.0
    assert (media / "overfit.md").is_file() and "overfit" in results


def test_overfit_with_the_teacher_trains_and_scores_its_fusion_head(world, tmp_path):
    """``--overfit-model mvbts``: the MVBTS teacher fits the same frames with the same recipe (bias -2 on its fusion
    head, no augmentation), kept apart from BTS's runs, and its checkpoints are scored through the fusion head."""
    runs, media = tmp_path / "runs", tmp_path / "media"
    argv = ["--world", str(world), "--runs", str(runs), "--media", str(media), "--budget", "tiny", "--device", "cpu"]
    argv += ["--overfit", "--overfit-frames", "2", "--overfit-model", "mvbts", "--iters", "2", "--eval-every", "2"]
    results = main(argv)
    stored = OmegaConf.create(read_checkpoint(runs / "overfit_mvbts/seed0/training_checkpoint_2.pt")["config"])
    assert stored.model.density_head == "multi_view" and stored.model.field.heads.multi_view.out_bias == -2.0
    assert stored.data.train.split_path == str(runs / "overfit_2x0_files.txt")
    assert not stored.data.train.color_aug and stored.model.flip_p == 0.0
    (run,) = results["overfit_mvbts"]["runs"]
    assert 0.0 <= run["scores"]["2"]["analytic/model/o_acc"] <= 1.0
    scored = json.loads((runs / "eval/overfit_mvbts/seed0/it2/metrics.json").read_text())
    assert scored["config"]["eval_head"] == "multi_view"  # the teacher's head, from view 0
    assert not (runs / "overfit").exists()  # BTS's overfit runs untouched


def test_overfit_model_is_for_the_photometric_overfit(world, tmp_path):
    argv = ["--world", str(world), "--runs", str(tmp_path), "--media", str(tmp_path), "--budget", "tiny"]
    with pytest.raises(SystemExit, match="--overfit-model mvbts"):
        main([*argv, "--overfit-model", "mvbts"])
    with pytest.raises(SystemExit, match="--overfit-model mvbts"):
        main([*argv, "--overfit", "--supervised", "--overfit-model", "mvbts"])


def test_observability_partitions_the_occluded_points(world):
    result = observability(world, world / "KITTI-360/splits/val_files.txt", max_frames=2)
    occluded = ("occupied_seen", "occupied_unseen", "free_seen", "free_unseen")
    assert result["frames"] == 2
    assert sum(result[k] for k in occluded) + result["visible"] == result["points"]
    assert sum(result[f"{k}_share_of_occluded"] for k in occluded) == pytest.approx(1.0)
    # The other views look behind view 0's occluders: some occluded free space is seen, and some is not.
    assert result["free_seen"] > 0 and result["free_unseen"] > 0
    assert torch.tensor([result[k] for k in occluded]).min() >= 0
    # Each frame on its own: its classes and the visible points share its grid; the per-frame counts add up to the
    # totals; "empty" is right on every free point.
    rows = result["per_frame"]
    assert len(rows) == 2
    points_per_frame = result["points"] // 2
    for key in (*occluded, "visible"):
        assert round(sum(row[key] for row in rows) * points_per_frame) == result[key]
    for row in rows:
        assert sum(row[k] for k in occluded) + row["visible"] == pytest.approx(1.0)
        # "empty" misses exactly the occupied points, the occluded ones among them (and any on a visible surface)
        assert 1.0 - row["empty_o_acc"] >= row["occupied_seen"] + row["occupied_unseen"] - 1e-12


@pytest.fixture(scope="module")
def val_observability(world):
    """What the default training views see of the validation frames (computed once for the tests below)."""
    return observability(world, world / "KITTI-360/splits/val_files.txt")


def test_more_training_views_never_see_less(world, val_observability):
    """Three frames per camera are the two of the default and one more, so every class a view can see grows (or
    stays) and the unseen ones shrink, on the same points."""
    two = val_observability
    three = observability(world, world / "KITTI-360/splits/val_files.txt", overrides=("data.train.frame_count=3",))
    assert three["points"] == two["points"] and three["visible"] == two["visible"]
    assert three["free_seen"] >= two["free_seen"] and three["occupied_seen"] >= two["occupied_seen"]
    assert three["free_unseen"] <= two["free_unseen"] and three["occupied_unseen"] <= two["occupied_unseen"]
    assert three["free_seen"] + three["free_unseen"] == two["free_seen"] + two["free_unseen"]
    # the third frame of each camera adds something on this world: the test would not tell otherwise
    assert three["free_seen"] > two["free_seen"]


def test_observability_of_the_training_frames_reports_each_frame(world, tmp_path):
    """``--observability --observability-frames train``: the left-camera training frames (what ``--overfit`` picks
    from), each with what the views constrain, as JSON and a plot with the overfitting check's margin."""
    argv = ["--world", str(world), "--runs", str(tmp_path / "runs"), "--media", str(tmp_path / "media")]
    result = main([*argv, "--budget", "tiny", "--observability", "--observability-frames", "train"])
    lines = (world / "KITTI-360/splits/train_files.txt").read_text().splitlines()
    left = [line.split() for line in lines if line.endswith(" l")]
    assert [(row["sequence"], row["frame"]) for row in result["per_frame"]] == [(s, int(f)) for s, f, _ in left]
    stored = json.loads((tmp_path / "media/observability_train.json").read_text())
    assert stored["per_frame"] == result["per_frame"]
    assert (tmp_path / "media/observability_train.png").stat().st_size > 10_000


def test_observability_with_other_views_is_kept_apart_by_its_tag(world, val_observability, tmp_path):
    argv = ["--world", str(world), "--runs", str(tmp_path / "runs"), "--media", str(tmp_path / "media")]
    tagged_run = main(
        [*argv, "--budget", "tiny", "--observability", "--set", "data.train.frame_count=1", "--tag", "fc1"]
    )
    assert json.loads((tmp_path / "media/observability+fc1.json").read_text())["free_seen"] == tagged_run["free_seen"]
    assert not (tmp_path / "media/observability.json").exists()
    # the override reached the views: one frame per camera sees less than the default two, on the same points
    assert tagged_run["free_seen"] < val_observability["free_seen"]
    assert tagged_run["points"] == val_observability["points"]


def test_the_objective_prefers_the_true_geometry_to_the_degenerate_answers(world, tmp_path):
    """The photometric term of the same patches under the exact world geometry is lower than under "every ray
    at the far plane" or a uniform fog: what training can descend towards (and a check of loader, poses,
    renderer and loss against the world's truth together)."""
    runs = tmp_path / "runs"
    argv = ["--world", str(world), "--runs", str(runs), "--media", str(tmp_path / "media"), "--budget", "tiny"]
    # the demo's sampling (32 per ray: 8 would resolve no surface), 256 rays
    argv += ["--set", "model.samples_per_ray=32", "model.ray_batch_size=256", "--tag", "landscape"]
    main([*argv, "--device", "cpu", "--iters", "1", "--eval-every", "1", "--workers", "1"])
    landscape = objective_landscape(world, runs / "baseline+landscape/seed0/training_checkpoint_1.pt", batches=4)
    losses = landscape["loss"]
    assert set(losses) == set(landscape["minus_model"]) == {"trained model", *LANDSCAPE_FIELDS}
    assert landscape["batches"] == 4 and landscape["minus_model"]["trained model"] == [0.0, 0.0]
    assert landscape["samples_per_ray"] == 32  # the run's own
    for name, (difference, error) in landscape["minus_model"].items():  # paired differences, per batch
        assert difference == pytest.approx(losses[name] - losses["trained model"], abs=1e-6) and error >= 0
    # measured on this half-resolution world (generator 1.1): 0.052 vs 0.058 (all far) and 0.111 (fog); on the demo
    # world 0.037-0.040 vs 0.059-0.060 and 0.09
    assert losses["exact geometry"] < 0.95 * min(losses["all far"], losses["constant 0.1"])
    # "exact, solid behind" is only reported, not ordered: on this world it scores 0.047 (below the exact 0.052), on
    # the overfitting stretch of world 1.1 0.053 against 0.044 (README): the objective does not always tell thin
    # from thick occupancy
    assert all(math.isfinite(value) and value > 0 for value in losses.values())
    table = landscape_table({"run/training_checkpoint_1.pt": landscape})
    # rendered with other sampling on request (the same fixed fields, another discretisation)
    coarse = objective_landscape(world, runs / "baseline+landscape/seed0/training_checkpoint_1.pt", 4, samples=8)
    assert coarse["samples_per_ray"] == 8
    assert coarse["loss"]["exact geometry"] != pytest.approx(losses["exact geometry"], rel=1e-3)
    # what makes the two comparable batch by batch: a batch's roles and patches come out of its own generator
    # before the jitter, so they do not depend on the samples per ray
    checkpoint = runs / "baseline+landscape/seed0/training_checkpoint_1.pt"
    run_cfg = stored_run_config(read_checkpoint(checkpoint, ("model", "config")))
    model = load_model(run_cfg.model, checkpoint, allow_random_weights=False, use_checkpoint_config=True).model
    batch = collate([instantiate(run_cfg.data.train, color_aug=False)[0]])
    drawn = []
    for samples in (8, 32):
        model.samples_per_ray = samples
        drawn.append(landscape_choices(model, batch, seed=0, i=3))
    assert drawn[0].roles == drawn[1].roles and [d.jitter.shape[-1] for d in drawn] == [8, 32]
    assert all(torch.equal(getattr(drawn[0].patches, k), getattr(drawn[1].patches, k)) for k in ("views", "y0", "x0"))
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(losses) and rows[1].startswith("| trained model |")


class _WallWorld:
    """Along the camera's z axis (camera at ``centre``, looking down +z): a wall from 4 to 5 m, which hides
    everything behind it, and a second solid from 8 to 9 m behind the wall."""

    def __init__(self, centre):
        self.centre = centre

    def occupied(self, points):
        z = points[:, 2] - self.centre[2]
        return ((z >= 4) & (z <= 5)) | ((z >= 8) & (z <= 9))

    def visible(self, points, camera_centre):
        assert torch.equal(camera_centre, self.centre)  # seen from view 0's centre
        return points[:, 2] - camera_centre[2] < 4  # the wall's face is the first surface on every ray


def test_landscape_fields_replace_exactly_the_points_they_name():
    """Hand-worked: four points on view 0's axis - free in front of the wall (2 m), inside the wall behind its face
    (4.5 m: hidden and occupied), the hidden gap (6 m) and the hidden solid (8.5 m) - under a model answering 0.7
    everywhere; each field changes only the class of points its name says, and keeps the model's validity."""
    view0_to_world = torch.eye(4, dtype=torch.float64)
    view0_to_world[:3, 3] = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    world = _WallWorld(view0_to_world[:3, 3])
    points = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, 4.5], [0.0, 0.0, 6.0], [0.0, 0.0, 8.5]]])  # view 0 frame
    invalid = torch.tensor([[[False], [True], [False], [True]]])

    def model_field(samples):
        return FieldOutput(sigma=torch.full(samples.points.shape[:2], 0.7), invalid=invalid)

    o, m = OPAQUE, 0.7
    expected = {  # visible free, hidden occupied (wall), hidden free (gap), hidden occupied (solid behind)
        "exact geometry": [0, o, 0, o],
        "exact, solid behind": [0, o, o, o],
        "all far": [0, 0, 0, 0],
        "constant 0.1": [0.1, 0.1, 0.1, 0.1],
        "model, hidden free emptied": [m, m, 0, m],
        "model, hidden occupied solid": [m, o, m, o],
        "model, hidden as the truth": [m, o, 0, o],
        "model, hidden all solid": [m, o, o, o],
        "model, hidden all empty": [m, 0, 0, 0],
        "exact, hidden free as the model": [0, o, m, o],
    }
    assert set(expected) == set(LANDSCAPE_FIELDS)
    samples = type("Samples", (), {"points": points})()
    for name, sigma in expected.items():
        out = _landscape_field(name, model_field, view0_to_world, world)(samples)
        assert out.sigma.tolist() == [pytest.approx(sigma)], name
        assert torch.equal(out.invalid, invalid), name


@pytest.fixture(scope="module")
def stretch_world(tmp_path_factory):
    """A full-resolution world of one 70-frame sequence (~25 s): its first 27 left training frames form a stretch."""
    from datasets.synthetic.generate import GeneratorConfig, generate

    root = tmp_path_factory.mktemp("stretch") / "world"
    generate(GeneratorConfig(out=root, sequences=1, frames=70, raw_frames=8, workers=2, show_progress=False))
    return root


@pytest.mark.slow
def test_overfitting_a_stretch_of_frames_learns_their_geometry(stretch_world, tmp_path):
    """The pipeline can learn occupancy (the idea of the official ``seg_overfitting`` split): BTS trained on a
    stretch of eight training frames (every second one; no augmentation, the synthetic recipe with head bias -2
    at the demo's size, antialiased views) and scored on those frames against the world's exact occupancy beats
    the constant "empty" answer by 0.02 and the "depth" baseline (everything behind the model's own depth is
    occupied) by 0.01 on O_acc and IE_acc after 600 iterations - the bar issue 15 set.

    Each sample renders from four frames per camera (16 views, ``data.train.frame_count=4``) instead of the
    recipe's two. With two, what the views see of these frames is worth only 0.018 over "empty" on O_acc (the
    occupied points some view sees are 1.8 % of the grid, ``--observability --observability-frames train``), under
    the bar, and the rest of the occluded space has to be extrapolated: seven random streams ended level with
    "empty" on average at 900 iterations (README, "The overfitting check"). Four frames leave 6.5 % of the grid as
    free space no view sees instead of 9.2 %. Measured 2026-12-08 on 2 AVX2-only cores in float32: at 600 seeds 0-4
    end at O_acc 0.890-0.907 and four of them pass (seed 3 misses its own "depth" on IE_acc, 0.732 against 0.747),
    where the 8 views of seeds 0-2 end below "empty" (0.847-0.858). So this is a draw that passes in four streams
    of five, not a check that cannot fail. At 900 one seed of three falls back to "empty" (0.862): the objective's
    pull towards filling the occluded free space, measured with ``--landscape``, is still there."""
    runs, media = tmp_path / "runs", tmp_path / "media"
    argv = ["--world", str(stretch_world), "--runs", str(runs), "--media", str(media), "--budget", "demo"]
    argv += ["--device", "cpu", "--overfit", "--overfit-frames", "8", "--overfit-stride", "2"]
    argv += ["--set", "data.train.frame_count=4", "--tag", "fc4"]
    results = main([*argv, "--iters", "600", "--eval-every", "300"])
    (run,) = results["overfit+fc4"]["runs"]
    last = run["scores"]["600"]
    for metric in ("o_acc", "ie_acc"):
        model, empty, depth = (last[f"analytic/{m}/{metric}"] for m in ("model", "empty", "depth"))
        assert model > empty + OVERFIT_MARGIN, (metric, model, empty)
        assert model > depth + 0.01, (metric, model, depth)
    assert (media / "overfit_overfit.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_field_holds_the_geometry_of_the_overfit_frames_when_told_it(stretch_world, tmp_path):
    """The other half of the overfitting check: the same network, frames and scoring, fitted to the exact
    occupancy instead of the photometric objective (``--supervised``), clears "empty" and its own "depth" by a wide
    margin within 300 iterations (measured 0.925 / 0.833 against empty 0.861 / 0.598 and depth 0.831 / 0.693;
    0.947 / 0.859 at 900). So encoder, feature lookup, density head and the exact benchmark can represent and score
    these frames' occupancy; what the photometric run leaves short of its bar is the objective's pull (README,
    "The overfitting check"). Not a substitute for the photometric check above, which stays as it is."""
    runs, media = tmp_path / "runs", tmp_path / "media"
    argv = ["--world", str(stretch_world), "--runs", str(runs), "--media", str(media), "--budget", "demo"]
    argv += ["--device", "cpu", "--overfit", "--overfit-frames", "8", "--overfit-stride", "2", "--supervised"]
    results = main([*argv, "--iters", "300", "--eval-every", "300"])
    (run,) = results["overfit_supervised"]["runs"]
    last = run["scores"]["300"]
    for metric, margin in (("o_acc", 0.04), ("ie_acc", 0.15)):
        model, empty, depth = (last[f"analytic/{m}/{metric}"] for m in ("model", "empty", "depth"))
        assert model > empty + margin, (metric, model, empty)
        assert model > depth + 0.05, (metric, model, depth)


def test_supervised_overfit_fits_the_exact_occupancy_and_is_scored_like_training(world, tmp_path):
    """``--overfit --supervised``: the same network fitted to the world's exact occupancy at the protocol's
    threshold. Its cross-entropy falls, its checkpoints carry the run's configuration (the overfit frames) and the
    exact benchmark scores them like a trained run's."""
    runs, media = tmp_path / "runs", tmp_path / "media"
    argv = ["--world", str(world), "--runs", str(runs), "--media", str(media), "--budget", "tiny", "--device", "cpu"]
    argv += ["--overfit", "--overfit-frames", "2", "--supervised", "--iters", "60", "--eval-every", "30"]
    results = main(argv)
    (run,) = results["overfit_supervised"]["runs"]
    losses = [value for _, value in run["loss"]]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])  # it learns (measured: about 0.24 -> 0.13)
    stored = OmegaConf.create(
        read_checkpoint(runs / "overfit_supervised/seed0/training_checkpoint_60.pt", ("config",))["config"]
    )
    assert stored.data.train.split_path == str(runs / "overfit_2x0_files.txt")
    assert set(run["scores"]) == {"30", "60"}
    assert 0 <= run["scores"]["60"]["analytic/model/o_acc"] <= 1
    assert (media / "overfit_supervised.png").is_file()


def test_supervised_needs_the_overfit_frames(world, tmp_path):
    argv = ["--world", str(world), "--runs", str(tmp_path), "--media", str(tmp_path), "--budget", "tiny"]
    with pytest.raises(SystemExit, match="--overfit"):
        main([*argv, "--supervised"])
