"""`make demo`: the paper's whole story on the synthetic world, resumable, on whatever device there is.

    python -m scripts.demo                                   # world -> MVBTS -> KDBTS -> BTS -> eval -> media
    python -m scripts.demo --world-only                      # generate the world and print one sample per loader
    python -m scripts.demo --budget tiny --out /tmp/w --runs /tmp/r --media /tmp/m   # seconds (the test suite)
    python -m scripts.demo --seed 1                          # another training draw (outputs/demo_seed1, media/...)
    python -m scripts.demo --budget long                     # 3x the iterations (outputs/demo_long, media/demo_long)

Stages (each skipped when its result exists, so an interrupted demo continues where it stopped; training stages
resume from their newest checkpoint):

1. generate the synthetic world (KITTI-360 and KITTI-Raw formats), print one sample of each loader, and
   preprocess its KITTI-360 images at the training size (the loader's cache: training steps about 1.7x faster
   on two cores than resampling the fisheyes on the fly);
2. train the MVBTS teacher (``train_synthetic_base``), distil the KDBTS student from it (``train_synthetic_KD``,
   ``init_from`` the teacher; at this budget with the KITTI-Raw KD recipe: encoder and teacher frozen, no view
   dropout, only the student head learns, at ``Budget.kd_lr``) and train a BTS baseline (``train_synthetic_bts``)
   for as many iterations as teacher + student together; the image encoder trains in bf16 where bf16 is native
   (CUDA, AVX-512 BF16 / AMX CPUs: ``Budget.bf16``), in float32 elsewhere;
3. evaluate each model as its training ended (its final checkpoint, not the best-by-validation one that ``eval.py``
   takes from a run directory): the occupancy protocol (lidar-derived reference, the analytic ground truth, the
   constant "empty" / "occupied" answers, the "depth" and "depth + 4 m" baselines and the oracle) for BTS, the KDBTS
   student, the MVBTS teacher (mono and stereo encoder views) and an untrained model, and the depth protocol;
4. render example images (input, depth, bird's-eye profile) and a short video to ``--media``;
5. print one results table and a plain verdict (does each model beat the "empty" and "depth" baselines, does the
   student beat BTS behind occluders); also ``results.md`` / ``results.json`` / ``results.png`` and the learning
   curves ``learning_curves.png`` in ``--media``.

``--budget auto`` (the default) takes the larger 'gpu' budget on a CUDA device and 'demo' (2 CPU cores, under
20 minutes) elsewhere; ``--budget long`` is the demo with 3x the iterations (25-32 minutes on 2 cores from a fresh
clone; in the three measured draws every model above "empty" on both exact columns, none above "depth" on both:
README, "The budget it takes").
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.preprocess import preprocess
from datasets.kitti_raw import KittiRawDataset
from datasets.sample import Sample
from datasets.synthetic.__main__ import parse_args as parse_generator_args
from datasets.synthetic.generate import generate
from scripts.common import configure_logging
from utils.checkpoints import rolling_checkpoints, training_checkpoint_path
from utils.config import compose_config
from utils.evaluation.report import json_safe, write_json
from utils.geometry import invert_rigid, transform_points

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("demo")


@dataclass(frozen=True)
class Budget:
    """How much of everything the demo does."""

    mvbts_iters: int
    kd_iters: int
    kd_lr: float  # the student head alone learns (encoder and teacher frozen)
    batch_size: int
    rays: int
    samples: int
    image_size: tuple[int, int]
    resnet_layers: int
    val_length: int
    eval_frames: int | None  # None: the whole test split
    volume_y_res: int
    video_frames: int
    image_indices: tuple[int, ...]  # test-split samples rendered as pictures
    profile_res: tuple[int, int, int]
    world: tuple[str, ...]  # generator options
    validations: int = 4  # validations during each training (the learning curves), besides the untrained one
    # bf16 autocast of the image encoder where it is native (CUDA; CPUs with AVX-512 BF16 / AMX), float32 elsewhere:
    # geometry, sampling, heads and compositing stay float32 (README, "Performance").
    bf16: bool = False

    @property
    def bts_iters(self) -> int:
        return self.mvbts_iters + self.kd_iters  # the same number of updates as teacher + student


BUDGETS = {
    # 2 CPU cores with AVX-512: < 20 minutes in all (10.4 measured); 19-24 on 2 AVX2-only cores (README, "The demo").
    "demo": Budget(
        mvbts_iters=150,
        kd_iters=150,
        kd_lr=1e-3,
        batch_size=2,
        rays=2048,
        samples=32,
        image_size=(64, 192),
        resnet_layers=18,
        val_length=8,
        eval_frames=None,
        volume_y_res=2,
        video_frames=12,
        image_indices=(0, 10),
        profile_res=(128, 128, 32),
        world=(),
        bf16=True,
    ),
    # Chosen on a CUDA device (`--budget auto`): the study's longer runs at twice the image size and the official
    # 64 samples per ray. Not measured on a GPU yet (README, "Demo").
    "gpu": Budget(
        mvbts_iters=3000,
        kd_iters=1500,
        kd_lr=1e-3,
        batch_size=4,
        rays=4096,
        samples=64,
        image_size=(128, 384),
        resnet_layers=18,
        val_length=16,
        eval_frames=None,
        volume_y_res=4,
        video_frames=48,
        image_indices=(0, 5, 10),
        profile_res=(256, 256, 64),
        world=(),
        bf16=True,
    ),
    # The test suite: every stage once, in seconds.
    "tiny": Budget(
        mvbts_iters=2,
        kd_iters=2,
        kd_lr=1e-3,
        batch_size=1,
        rays=64,
        samples=8,
        image_size=(64, 96),
        resnet_layers=18,
        val_length=1,
        eval_frames=1,
        volume_y_res=0,
        video_frames=2,
        image_indices=(0, 1),
        profile_res=(32, 32, 8),
        world=("--small",),
    ),
}
# The demo's sizes with 3x the iterations: BTS gets the 900 after which it stayed above its own "depth" baseline on the
# validation frames (README, "Training study", point 6). 25-32 minutes on 2 CPU cores; on the test frames every model
# above "empty", none above "depth" on both columns, in three measured draws (README, "The budget it takes").
BUDGETS["long"] = replace(BUDGETS["demo"], mvbts_iters=450, kd_iters=450)


# --- stage 1: the world ----------------------------------------------------------------------------------------


def describe(name: str, dataset, sample: Sample) -> str:
    """A few lines about one sample: shapes, intrinsics, camera centres, depth."""
    lines = [
        f"{name}: {len(dataset)} samples, {sample.num_views} views",
        f"  images       {tuple(sample.images.shape)} in [{sample.images.min():.2f}, {sample.images.max():.2f}]",
        f"  K_norm[0]    fx'={sample.K_norm[0, 0, 0]:.4f} fy'={sample.K_norm[0, 1, 1]:.4f} "
        f"cx'={sample.K_norm[0, 0, 2]:.4f} cy'={sample.K_norm[0, 1, 2]:.4f}",
    ]
    # Camera centres in view 0's frame (x right, y down, z forward): stereo baseline along x, motion along z.
    centres = transform_points(invert_rigid(sample.cam_to_world[0].double()), sample.cam_to_world[:, :3, 3].double())
    for v in range(sample.num_views):
        x, y, z = centres[v].tolist()
        lines.append(f"  view {v}: camera centre in view 0's frame = ({x:+.2f}, {y:+.2f}, {z:+.2f}) m")
    if sample.depth is not None:
        valid = sample.depth > 0
        lines.append(
            f"  depth        {tuple(sample.depth.shape)}, {int(valid.sum())} lidar pixels, "
            f"{float(sample.depth[valid].min()):.2f}-{float(sample.depth[valid].max()):.2f} m"
        )
    return "\n".join(lines)


def make_world(generator_args: list[str]) -> Path:
    """Generate (or finish generating) the world; print one sample of each loader; return the root."""
    config = parse_generator_args(generator_args)
    start = time.perf_counter()
    generate(config)
    root = config.out
    print(f"Synthetic world ready in {root.resolve()} ({time.perf_counter() - start:.1f} s)\n")
    kitti360 = Kitti360Dataset(
        data_path=root / "KITTI-360",
        split_path=root / "KITTI-360" / "splits" / "train_files.txt",
        return_depth=True,
        antialias=synthetic_antialias(),
    )
    kitti_raw = KittiRawDataset(
        data_path=root / "KITTI-Raw",
        pose_path=root / "KITTI-Raw" / "orb-slam_poses",
        split_path=root / "KITTI-Raw" / "splits" / "synthetic" / "train_files.txt",
        return_depth=True,
        antialias=synthetic_antialias(),
    )
    with torch.no_grad():
        print(describe("KITTI-360 loader", kitti360, kitti360[0]))
        print()
        print(describe("KITTI-Raw loader", kitti_raw, kitti_raw[0]))
    print()
    return root


@functools.cache
def synthetic_antialias() -> bool:
    """Whether the synthetic configs resize with antialiasing (``data.antialias`` of configs/data/synthetic_*);
    composed once per process."""
    return bool(compose_config("train_synthetic_bts").data.antialias)


def prepare_loader_cache(root: Path, budget: Budget, workers: int, quiet: bool, antialias: bool | None = None) -> None:
    """Resize / resample the KITTI-360 images once at the demo's size (skips what exists, so it resumes);
    ``antialias`` None: as the synthetic configs do."""
    start = time.perf_counter()
    antialias = synthetic_antialias() if antialias is None else antialias
    report = preprocess(root / "KITTI-360", budget.image_size, workers=workers, progress=not quiet, antialias=antialias)
    print(
        f"Loader cache at {budget.image_size}: {report.written} images written, {report.skipped} present "
        f"({time.perf_counter() - start:.1f} s)\n"
    )
    if report.failed:  # the loader falls back to the originals; training names any it cannot read either
        print(f"{len(report.failed)} image(s) could not be converted:\n  " + "\n  ".join(report.failed) + "\n")


# --- stage 2: training -----------------------------------------------------------------------------------------


def train_stage(
    name: str,
    config: str,
    overrides: list[str],
    out: Path,
    iters: int,
    device: str,
    validate_every: int | None = None,
    keep_checkpoints: bool = False,
) -> Path:
    """Train ``config`` into ``out`` for ``iters`` iterations; skip when done, resume when interrupted.

    ``validate_every``: validate every that many iterations, from an untrained validation on (learning curves);
    None: once at the end. ``keep_checkpoints``: keep a checkpoint at every validation (the study scores each);
    otherwise only the newest one (the demo: a ResNet-18 training checkpoint is ~130 MB)."""
    from utils.training.train import train

    if training_checkpoint_path(out, iters).is_file():
        print(f"[{name}] done earlier: {out}")
        return out
    resume = [f"trainer.resume_from={out}", "trainer.init_from=null"] if rolling_checkpoints(out) else []
    if resume:
        print(f"[{name}] resuming from {rolling_checkpoints(out)[0]}")
    every = iters if validate_every is None else validate_every
    if keep_checkpoints:
        checkpoints = [f"trainer.checkpoint_every={every}", f"trainer.n_saved={iters // every + 1}"]
    else:
        checkpoints = [f"trainer.checkpoint_every={max(1, min(50, iters))}", "trainer.n_saved=1"]
    overrides = [
        *overrides,
        f"trainer.max_iters={iters}",
        f"trainer.validate_every={every}",
        f"trainer.validate_at_start={validate_every is not None}",
        *checkpoints,
        f"trainer.device={device}",
        f"trainer.output_dir={out}",
        *resume,
    ]
    cfg = compose_config(config, overrides)
    start = time.perf_counter()
    train(cfg, overrides)  # a resume to a larger iters extends the run
    print(f"[{name}] {iters} iterations in {time.perf_counter() - start:.0f} s -> {out}")
    return out


def budget_overrides(root: Path, budget: Budget) -> list[str]:
    """The training overrides of a budget on the world at ``root`` (shared by the three models and the study)."""
    H, W = budget.image_size
    return [
        f"data.data_path={root / 'KITTI-360'}",
        f"data.image_size=[{H},{W}]",
        f"data.val.length={budget.val_length}",
        f"model.ray_batch_size={budget.rays}",
        f"model.samples_per_ray={budget.samples}",
        f"model.field.encoder.resnet_layers={budget.resnet_layers}",
        f"trainer.batch_size={budget.batch_size}",
        "trainer.visualize_profile=false",
    ]


def trains_bf16(budget: Budget, device: str) -> bool:
    """Whether the budget's image encoder trains in bf16 on ``device``: only where bf16 is native there."""
    from utils.training.steps import bf16_applies

    return bf16_applies(torch.device(device), budget.bf16)


def precision_overrides(budget: Budget, device: str) -> list[str]:
    """``trainer.bf16`` of a budget on ``device`` (:func:`trains_bf16`; no float32-fallback warning)."""
    return [f"trainer.bf16={str(trains_bf16(budget, device)).lower()}"]


def precision_note(budget: Budget, device: str) -> str:
    """One line on how the image encoder will train here, and what that means for time and table."""
    if trains_bf16(budget, device):
        return "image encoder in bf16 autocast (native here)"
    if not budget.bf16:
        return "image encoder in float32 (this budget asks for no bf16)"
    return (
        "image encoder in float32: this CPU has no native bf16 (AVX-512 BF16 / AMX), so training runs 2-3x slower "
        "than on one that has (the 'demo' budget: 19-24 minutes on 2 such cores against ~10) and the same seed draws "
        "another table than the README's (README, Troubleshooting)"
    )


def train_all(root: Path, runs: Path, budget: Budget, device: str, seed: int = 0) -> dict[str, Path]:
    """Train the teacher, the student and BTS; returns each one's final checkpoint, ``training_checkpoint_<iters>.pt``:
    what the demo scores, renders and distils from. Not what a run directory resolves to in ``eval.py`` (its best
    validation abs_rel): with a handful of validations on 8 frames that picks an early checkpoint by chance (BTS at 75
    of its 300 iterations, the teacher at 111 of 150, in measured runs), and the table compares the models after
    their budgets of updates."""
    common = [*budget_overrides(root, budget), *precision_overrides(budget, device), f"trainer.seed={seed}"]

    def every(iters: int) -> int:
        return max(1, iters // max(1, budget.validations))

    mvbts = train_stage(
        "MVBTS", "train_synthetic_base", common, runs / "mvbts", budget.mvbts_iters, device, every(budget.mvbts_iters)
    )
    mvbts = training_checkpoint_path(mvbts, budget.mvbts_iters)  # the student starts from the teacher scored
    kd = [
        *common,
        f"trainer.init_from={mvbts}",
        # Official KITTI-Raw KD recipe (train_kitti_raw_KD): teacher and encoder fixed, the student head fits the
        # teacher's densities. Only a small MLP learns, so a larger step than the trunk's 1e-4 is safe here.
        "model.field.encoder.freeze=true",
        "model.frozen_heads=[multi_view]",
        "model.field.heads.multi_view.view_dropout=0.0",
        f"trainer.optimizer.lr={budget.kd_lr}",
    ]
    kdbts = train_stage(
        "KDBTS", "train_synthetic_KD", kd, runs / "kdbts", budget.kd_iters, device, every(budget.kd_iters)
    )
    bts = train_stage(
        "BTS", "train_synthetic_bts", common, runs / "bts", budget.bts_iters, device, every(budget.bts_iters)
    )
    return {
        "bts": training_checkpoint_path(bts, budget.bts_iters),
        "mvbts": mvbts,
        "kdbts": training_checkpoint_path(kdbts, budget.kd_iters),
    }


# --- stage 3: evaluation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalRun:
    label: str  # row of the results table
    model: str  # bts | mvbts | kdbts | untrained (BTS architecture, random weights: the trivial learner)
    config: str
    overrides: tuple[str, ...] = ()


EVAL_RUNS = (
    EvalRun("BTS", "bts", "eval_synthetic_occ"),
    EvalRun("KDBTS student", "kdbts", "eval_synthetic_occ", ("eval_head=single_view",)),
    EvalRun("MVBTS teacher, mono", "mvbts", "eval_synthetic_occ", ("eval_head=multi_view",)),
    # stereo = views [0, 2], the same indices with or without the fisheyes: skip loading them
    EvalRun(
        "MVBTS teacher, stereo",
        "mvbts",
        "eval_synthetic_occ_mvbts",
        ("encoder_views=stereo", "eval.dataset.return_fisheye=false"),
    ),
    EvalRun("untrained (random weights)", "untrained", "eval_synthetic_occ"),
)
DEPTH_RUNS = (
    EvalRun("BTS", "bts", "eval_synthetic_depth"),
    EvalRun("KDBTS student", "kdbts", "eval_synthetic_depth", ("eval_head=single_view",)),
    EvalRun("MVBTS teacher, mono", "mvbts", "eval_synthetic_depth", ("eval_head=multi_view",)),
    EvalRun("untrained (random weights)", "untrained", "eval_synthetic_depth"),
)


def evaluate_stage(run: EvalRun, root: Path, checkpoint: Path | None, out: Path, budget: Budget, device: str) -> dict:
    """Metrics of one evaluation (read back from ``metrics.json`` when it already exists)."""
    from utils.evaluation.run import evaluate

    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        earlier = json.loads(metrics_file.read_text())
        scored = earlier["checkpoint"]  # what utils.evaluation.run.evaluate recorded: the checkpoint given, or None
        if scored == (None if checkpoint is None else str(checkpoint)):
            return earlier["summary"]
        # e.g. a runs folder evaluated before the demo scored final checkpoints: its table would mix the two
        print(f"[eval] {run.label}: {metrics_file} scored {scored}, evaluating {checkpoint}")
    depth = run.config.endswith("depth")
    data_path = root / ("KITTI-Raw" if depth else "KITTI-360")
    if checkpoint is None:  # the untrained row: the BTS architecture of the demo, seeded random weights
        H, W = budget.image_size
        model = ["allow_random_weights=true", f"data.image_size=[{H},{W}]", f"model.samples_per_ray={budget.samples}"]
    else:
        model = [f"checkpoint={checkpoint}"]
    overrides = [
        *model,
        f"data.data_path={data_path}",
        f"output_dir={out}",
        f"device={device}",
        "num_workers=1",
        f"eval.cache_dir={out.parents[1] / 'cache'}",  # model-independent references, shared by every run
        *([] if budget.eval_frames is None else [f"eval.max_frames={budget.eval_frames}"]),
        *([] if depth else [f"eval.volume_y_res={budget.volume_y_res}"]),
        *run.overrides,
    ]
    if depth:
        overrides.append(f"data.pose_path={data_path / 'orb-slam_poses'}")
        overrides.append(f"data.split_dir={data_path / 'splits' / 'synthetic'}")
    start = time.perf_counter()
    summary = evaluate(compose_config(run.config, overrides), out)
    print(f"[eval] {run.label} ({run.config}): {time.perf_counter() - start:.0f} s")
    return json_safe(summary)  # as metrics.json holds it (a metric no frame scored: None), so a rerun agrees


def evaluate_all(root: Path, models: dict[str, Path], evals: Path, budget: Budget, device: str) -> dict:
    """Results by row label: the models, then the baselines computed alongside BTS (from BTS's own depth)."""
    results: dict[str, dict] = {}
    baselines: dict[str, dict] = {}
    for group, runs in (("occupancy", EVAL_RUNS), ("depth", DEPTH_RUNS)):
        for run in runs:
            slug = re.sub(r"[^a-z0-9]+", "_", run.label.lower()).strip("_")
            summary = evaluate_stage(run, root, models.get(run.model), evals / group / slug, budget, device)
            model, extra = model_rows(group, summary)
            results.setdefault(run.label, {}).update(model)
            if run.model == "bts":
                for label, row in extra.items():
                    baselines.setdefault(label, {}).update(row)
    return {**results, **baselines}


# --- stage 4: media --------------------------------------------------------------------------------------------


def render_media(root: Path, models: dict[str, Path], media: Path, budget: Budget, device: str) -> list[Path]:
    from scripts.images import gen_imgs
    from scripts.videos import gen_vid_seq_kdbts

    data = str(root / "KITTI-360")
    profile = [str(v) for v in budget.profile_res]
    written: list[Path] = []
    for kind in ("bts", "kdbts", "mvbts"):
        out = media / "images" / kind
        if not list(out.glob("*_profile.png")):
            args = ["-m", "synthetic", "-k", kind, "-c", str(models[kind]), "--data-path", data, "--split", "test"]
            args += ["--indices", *(str(i) for i in budget.image_indices), "--out", str(out), "--device", device]
            gen_imgs.main([*args, "--profile-res", *profile])
        written.extend(sorted(out.glob("*.png")))
    video = media / "kdbts_sequence.mp4"
    if not video.is_file():
        gen_vid_seq_kdbts.main(
            [
                *("-m", "synthetic", "-k", "kdbts", "-c", str(models["kdbts"]), "--data-path", data),
                *("--split", "test", "--start", "0", "--end", str(budget.video_frames), "--stride", "1"),
                *("--profile", "--profile-res", *profile, "--out", str(video), "--device", device),
            ]
        )
    written.append(video)
    return written


# --- stage 5: the table ----------------------------------------------------------------------------------------

# (key in the results, column title); results keys are "<protocol>/<reference>/<metric>" of the model's row.
COLUMNS = (
    ("occupancy/lidar/o_acc", "O_acc (lidar)"),
    ("occupancy/lidar/ie_acc", "IE_acc (lidar)"),
    ("occupancy/lidar/ie_rec", "IE_rec (lidar)"),
    ("occupancy/analytic/o_acc", "O_acc (exact)"),
    ("occupancy/analytic/ie_acc", "IE_acc (exact)"),
    ("occupancy/analytic/ie_rec", "IE_rec (exact)"),
    ("occupancy/analytic/o_auroc", "O_AUROC (exact)"),
    ("occupancy/analytic/ie_auroc", "IE_AUROC (exact)"),
    ("occupancy/analytic_volume/ie_acc", "IE_acc (exact 3D)"),
    ("depth/lidar/abs_rel", "abs_rel"),
    ("depth/lidar/a1", "a1"),
)


def model_rows(group: str, summary: dict) -> tuple[dict, dict[str, dict]]:
    """Split an evaluation summary (``<reference>/<method>/<metric>``) into the model's row and baseline rows."""
    model: dict = {}
    baselines: dict[str, dict] = {}
    for key, value in summary.items():
        parts = key.split("/")
        if len(parts) != 3:
            continue
        reference, method, metric = parts
        target = model if method == "model" else baselines.setdefault(f"baseline: {method}", {})
        target[f"{group}/{reference}/{metric}"] = value
    return model, baselines


def results_table(results: dict[str, dict]) -> str:
    """Markdown table, model x metric (a dash where a model has no such figure)."""
    present = [(key, title) for key, title in COLUMNS if any(key in row for row in results.values())]
    lines = ["| model | " + " | ".join(title for _, title in present) + " |", "|---" * (len(present) + 1) + "|"]
    for label, row in results.items():
        cells = [f"{row[key]:.3f}" if isinstance(row.get(key), float) else "-" for key, _ in present]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def learning_curves(models: dict[str, Path], media: Path) -> Path:
    """``learning_curves.png``: the training loss and the validation abs_rel of the three trainings, read from the run
    directories of their final checkpoints ``models`` (:func:`train_all`)."""
    from scripts.curves import plot_runs, read_scalars

    runs = {"MVBTS teacher": "mvbts", "KDBTS student": "kdbts", "BTS": "bts"}
    scalars = {name: read_scalars(models[model].parent) for name, model in runs.items()}
    panels = [("train/loss", "training loss (moving average)"), ("val/abs_rel", "validation abs_rel (lidar depth)")]
    return plot_runs(media / "learning_curves.png", "make demo: learning curves", scalars, panels)


def results_picture(results: dict[str, dict], media: Path, title: str) -> Path:
    """``results.png``: the results table as a picture, the trained models in bold."""
    from scripts.curves import table_picture

    present = [(key, name) for key, name in COLUMNS if any(key in row for row in results.values())]
    rows = [
        [label] + [f"{row[key]:.3f}" if isinstance(row.get(key), float) else "-" for key, _ in present]
        for label, row in results.items()
    ]
    trained = [i for i, label in enumerate(results) if not label.startswith(("baseline", "untrained"))]
    return table_picture(media / "results.png", ["model", *(name for _, name in present)], rows, title, trained)


# Closer than this to a baseline (or the student to BTS) is the same answer, not a win: 0.005 of the exact grid is
# a few hundred of the test frames' grid points, what one training draw moves by far more (README, "The demo").
VERDICT_MARGIN = 0.005
WORDS = ("above", "level with", "below")


def compare_word(value: float, bar: float) -> str:
    """One of :data:`WORDS`: "level with" within :data:`VERDICT_MARGIN` of ``bar``."""
    return "above" if value > bar + VERDICT_MARGIN else "below" if value < bar - VERDICT_MARGIN else "level with"


def verdict(results: dict[str, dict]) -> list[str]:
    """Plain sentences: is each trained model above, level with or below the constant "empty" answer and the "depth"
    baseline on the exact thresholded occupancy, and does the student beat BTS behind occluders (on IE_acc, and on
    the threshold-free IE_AUROC: when the two disagree, no answer is given)."""
    lines = []
    empty, depth = results.get("baseline: empty", {}), results.get("baseline: depth", {})
    for label, row in results.items():
        if label.startswith(("baseline", "untrained")) or "occupancy/analytic/o_acc" not in row:
            continue
        parts = []
        for key, name in (("occupancy/analytic/o_acc", "O_acc"), ("occupancy/analytic/ie_acc", "IE_acc")):
            value = row[key]
            words = {n: compare_word(value, bar[key]) for n, bar in (("empty", empty), ("depth", depth)) if key in bar}
            groups = [(w, [n for n, v in words.items() if v == w]) for w in WORDS]
            parts.append(f"{name} {value:.3f} " + "; ".join(f"{w} {' and '.join(ns)}" for w, ns in groups if ns))
        lines.append(f"{label}: exact " + ", ".join(parts))
    student, bts = results.get("KDBTS student", {}), results.get("BTS", {})
    key, auroc = "occupancy/analytic/ie_acc", "occupancy/analytic/ie_auroc"
    if key in student and key in bts:
        figures = f"exact IE_acc {student[key]:.3f} vs {bts[key]:.3f}"
        words = {compare_word(student[key], bts[key])}
        if auroc in student and auroc in bts:
            figures += f" (IE_AUROC {student[auroc]:.3f} vs {bts[auroc]:.3f})"
            words.add(compare_word(student[auroc], bts[auroc]))
        if {"above", "below"} <= words:
            answer = "is neither clearly better nor worse than BTS (IE_acc and IE_AUROC disagree)"
        elif "above" in words:
            answer = "beats BTS"
        elif "below" in words:
            answer = "does NOT beat BTS"
        else:
            answer = "is level with BTS"
        lines.append(f"Behind occluders the KDBTS student {answer}: {figures}")
    return lines


# --- main ------------------------------------------------------------------------------------------------------


def choose_budget(name: str, device: str) -> str:
    """The budget ``name``; ``auto`` is the larger 'gpu' budget on a CUDA device and 'demo' elsewhere."""
    if name != "auto":
        return name
    return "gpu" if device.startswith("cuda") else "demo"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="world root (default %(default)s)")
    parser.add_argument(
        "--runs",
        type=Path,
        help="training and evaluation runs (default outputs/demo, with _long / _tiny for those budgets and "
        "_seed<N> for --seed N)",
    )
    parser.add_argument(
        "--media", type=Path, help="pictures, video, results table (default media/demo, named as --runs)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed of the three models (trainer.seed): another draw of the same budget; the world stays",
    )
    parser.add_argument(
        "--budget",
        choices=["auto", *sorted(BUDGETS)],
        default="auto",
        help="how much to train and evaluate (auto: 'gpu' on a CUDA device, else 'demo')",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when present, else cpu) | cpu | cuda")
    parser.add_argument("--workers", type=int, default=2, help="world render + preprocessing processes")
    parser.add_argument("--world-only", action="store_true", help="stop after the world and the loader samples")
    parser.add_argument("--quiet", action="store_true", help="no generator progress bar")
    args = parser.parse_args(argv)
    args.runs = args.runs or Path("outputs") / folder_name(args.budget, args.seed)
    args.media = args.media or Path("media") / folder_name(args.budget, args.seed)
    return args


SEPARATE_BUDGETS = ("long", "tiny")
SEED_FILE = "demo_seed.txt"  # "<seed> <budget>"; a folder marked before budgets were recorded holds "<seed>"


def folder_name(budget: str, seed: int) -> str:
    """The default runs / media folder name of a draw: the budgets a user names get folders of their own, 'demo' and
    'gpu' (what auto picks) share the demo's; another seed adds its own suffix."""
    name = "demo" + (f"_{budget}" if budget in SEPARATE_BUDGETS else "")
    return name + ("" if seed == 0 else f"_seed{seed}")


def claim_runs(runs: Path, seed: int, budget: str) -> None:
    """Mark ``runs`` as the runs of ``seed`` at ``budget``, refusing a folder that holds another seed's or another
    budget's (the stages would skip, resume or extend those trainings and mix two draws in one table: a 'long' run
    in the demo's folder would continue the demo's trainings instead of training its own).
    A folder with trainings but no mark is from before ``--seed``: seed 0; one marked without a budget, the demo's."""
    mark = runs / SEED_FILE
    if mark.is_file():
        held_seed, *rest = mark.read_text().split()
        held_budget = rest[0] if rest else "demo"  # marked before the budget was recorded
    elif any((runs / model).is_dir() for model in ("mvbts", "kdbts", "bts")):
        held_seed, held_budget = "0", "demo"  # trained before --seed existed
    else:
        held_seed, held_budget = str(seed), budget  # a new folder: nothing to refuse
    default = Path("outputs") / folder_name(budget, seed)
    if held_seed != str(seed):
        raise SystemExit(
            f"{runs} holds the demo's runs of seed {held_seed}, not {seed}: pass another --runs (the default for "
            f"--seed {seed} is {default}) or delete that folder"
        )
    if held_budget != budget:
        raise SystemExit(
            f"{runs} holds the demo's runs of the '{held_budget}' budget, not '{budget}': they would be extended or "
            f"skipped and two budgets mixed in one table. Pass another --runs (the default for --budget {budget} is "
            f"{default}) or delete that folder"
        )
    runs.mkdir(parents=True, exist_ok=True)
    mark.write_text(f"{seed} {budget}\n")


def main(argv=None) -> dict[str, dict] | None:
    args = parse_args(argv)
    configure_logging(logging.WARNING)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    budget_name = choose_budget(args.budget, device)
    budget = BUDGETS[budget_name]
    if not args.world_only:
        claim_runs(args.runs, args.seed, budget_name)
    start = time.perf_counter()
    generator = ["--out", str(args.out), "--workers", str(args.workers), *budget.world]
    root = make_world([*generator, *(["--quiet"] if args.quiet else [])])
    if args.world_only:
        return None
    prepare_loader_cache(root, budget, args.workers, args.quiet)
    print(f"Training on {device} with the '{budget_name}' budget: {asdict(budget)}")
    print(precision_note(budget, device))
    models = train_all(root, args.runs, budget, device, args.seed)
    results = evaluate_all(root, models, args.runs / "eval", budget, device)
    media = render_media(root, models, args.media, budget, device)

    table = results_table(results)
    lines = verdict(results)
    args.media.mkdir(parents=True, exist_ok=True)
    (args.media / "results.md").write_text(table + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    write_json(args.media / "results.json", results)
    media.append(learning_curves(models, args.media))
    seed = "" if args.seed == 0 else f", seed {args.seed}"
    title = f"make demo ({budget_name} budget{seed} on {device}): exact = the world's true occupancy, test split"
    media.append(results_picture(results, args.media, title))
    print("\n" + table + "\n\n" + "\n".join(lines))
    print(f"\nruns: {args.runs}   media: {args.media} ({len(media)} files)   total {time.perf_counter() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
