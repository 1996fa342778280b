"""Speed and memory of the training step and of full-image rendering, as JSON plus a table.

    python -m scripts.benchmark                        # BTS, MVBTS, KDBTS at the official and small sizes
    python -m scripts.benchmark --sizes official --batch-size 8 --device cuda --bf16
    python -m scripts.benchmark --sizes tiny --iters 2 --warmup 1 --out /tmp/bench.json   # what the tests run

Every case runs in a fresh process (so its peak memory is its own): the model is built from the real training
config (``hydra compose`` + ``instantiate``, ImageNet weights off), a KITTI-360-shaped batch of 8 posed views is
made up in memory (no dataset needed), and the real train step of ``utils/training/steps.py`` (forward, loss,
backward, Adam step) is timed: ``warmup`` untimed iterations, then the median of ``iters``. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident set size on CPU (which includes
the ~0.67 GB of the Python + torch runtime, torch 2.13 on this project's CPU VM; ``baseline_rss_mb`` is the same
figure before the model exists). Cases run with the host-memory setting training uses (:mod:`utils.host_memory`);
``--compare``'s other revision runs with the C library's allocator as it comes, as the official code does, unless
``--old-host-memory reuse`` (to compare the code alone).

With ``--data-root`` (a synthetic world, ``python -m datasets.synthetic --out DIR``, or any root holding a
``KITTI-360/`` tree) it also measures the KITTI-360 data loader (samples/s, resampling on the fly vs the
preprocessed cache; ``--prepare-cache`` builds the cache first and times that) and the two evaluation protocols
on the synthetic world (frames/s; occupancy with a cold and then a warm lidar-reference cache; depth), with
random weights of the first size's model.

Sizes (``--sizes``): ``official`` = ResNet-50, 192 x 640, each config's own ray batch (BTS 4096, MVBTS and KD
2048 rays) x 64 samples (REFERENCE 1.3), batch 1 on
CPU and 8 on CUDA unless ``--batch-size``; ``small`` = ResNet-18, 64 x 192, 512 rays x 32 samples, batch 2;
``tiny`` = ResNet-18, 64 x 128, 64 rays x 8 samples, batch 1 (seconds, for the test suite).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# model kind -> the training config that defines it (more kinds join as their configs land)
MODEL_CONFIGS = {"bts": "train_kitti_360_bts", "mvbts": "train_kitti_360_base", "kdbts": "train_kitti_360_KD"}


@dataclass(frozen=True)
class Size:
    resnet_layers: int
    image_size: tuple[int, int]
    rays: int | None  # None: the training config's ray batch (BTS 4096, MVBTS / KDBTS 2048)
    samples: int
    batch_cpu: int
    batch_cuda: int


SIZES = {
    "official": Size(50, (192, 640), None, 64, batch_cpu=1, batch_cuda=8),
    "small": Size(18, (64, 192), 512, 32, batch_cpu=2, batch_cuda=8),
    "tiny": Size(18, (64, 128), 64, 8, batch_cpu=1, batch_cuda=1),
}


@dataclass
class Case:
    model: str
    size: str
    device: str
    batch_size: int
    bf16: bool
    warmup: int
    iters: int
    channels_last: str = "auto"  # the encoder's memory format: auto (the config's default) | true | false
    compile: bool = False  # torch.compile the encoder (as trainer.compile); the warm-up then includes compiling
    encoder_views: int | None = None  # MVBTS / KDBTS: encoder views per training step (None: the config's 3)


@dataclass
class CaseResult:
    case: Case
    train_step_s_median: float
    train_step_s_all: list[float]
    trunk_s: float  # the image encoder's forward + backward alone on the step's encoder views (the convolutions' floor)
    render_image_s: float  # one full image of view 0 rendered (validation / gen_img path)
    gen_img_custom_s: float  # scripts/images/gen_img_custom per image: encode, depth picture, bird's-eye profile
    peak_memory_mb: float
    memory_kind: str  # cuda_max_allocated | cpu_peak_rss
    baseline_rss_mb: float
    parameters: int
    extra: dict = field(default_factory=dict)


def make_batch(batch_size: int, image_size: tuple[int, int], generator):
    """A KITTI-360-shaped batch: 8 views (stereo pairs at t, t+1 and two rotated fisheye-like views) of smooth
    random textures, with the dataset's normalised intrinsics and a 0.6 m baseline / 1 m per frame motion."""
    import torch
    import torch.nn.functional as F

    from datasets.sample import Sample, collate
    from utils.geometry import make_rigid, rotation_x

    H, W = image_size
    V = 8
    K = torch.tensor([[0.7849, 0.0, -0.0312], [0.0, 2.9391, 0.2701], [0.0, 0.0, 1.0]])
    samples = []
    for b in range(batch_size):
        texture = torch.rand(V, 3, max(H // 8, 2), max(W // 8, 2), generator=generator)
        images = F.interpolate(texture, size=(H, W), mode="bilinear", align_corners=False) * 2 - 1
        poses = []
        for v in range(V):
            right, later = (v // 2) % 2, v % 2
            fisheye = v >= 4
            R = rotation_x(-15.0 * math.pi / 180) if fisheye else torch.eye(3, dtype=torch.float64)
            t = torch.tensor([0.6 * right, 0.0, 1.0 * later + (10.0 if fisheye else 0.0)], dtype=torch.float64)
            poses.append(make_rigid(R, t))
        samples.append(
            Sample(
                images=images.contiguous(),
                K_norm=K.expand(V, 3, 3).clone(),
                cam_to_world=torch.stack(poses).float(),
                sequence="benchmark",
                frame_id=b,
                is_right=False,
                index=b,
            )
        )
    return collate(samples)


def build_overrides(size: Size, batch_size: int, channels_last: str, encoder_views: int | None) -> list[str]:
    """The Hydra overrides of a case: the size, no ImageNet download, and the encoder-view count."""
    overrides = [
        f"model.field.encoder.resnet_layers={size.resnet_layers}",
        "model.field.encoder.pretrained=false",
        f"model.samples_per_ray={size.samples}",
        f"data.image_size=[{size.image_size[0]},{size.image_size[1]}]",
        f"trainer.batch_size={batch_size}",
        f"model.field.encoder.channels_last={channels_last}",
    ]
    if size.rays is not None:
        overrides.append(f"model.ray_batch_size={size.rays}")
    if encoder_views is not None:
        overrides.append(f"model.num_multiviews={encoder_views}")
    return overrides


def build(model_kind: str, size: Size, batch_size: int, channels_last: str = "auto", encoder_views: int | None = None):
    """Model, loss config and optimizer factory from the real training config at ``size``."""
    from hydra.utils import instantiate

    from utils.config import compose_config

    overrides = build_overrides(size, batch_size, channels_last, encoder_views)
    cfg = compose_config(MODEL_CONFIGS[model_kind], overrides)
    return instantiate(cfg.model), instantiate(cfg.loss), instantiate(cfg.trainer.optimizer)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_case(case: Case) -> CaseResult:
    """Time one case in this process (the caller gives each case a fresh process)."""
    import torch

    from utils.host_memory import reuse_freed_memory
    from utils.training.steps import TrainStep, autocast, bf16_applies

    host_memory = "reuse" if reuse_freed_memory() else "system"  # as training sets it up (utils/host_memory.py)
    torch.manual_seed(0)
    device = torch.device(case.device)
    baseline = peak_rss_mb()
    size = SIZES[case.size]
    model, loss_cfg, make_optimizer = build(case.model, size, case.batch_size, case.channels_last, case.encoder_views)
    model = model.to(device)
    if case.compile:
        model.field.encoder.compile()
    optimizer = make_optimizer(params=model.parameters())  # the config's (fused Adam)
    step = TrainStep(model, optimizer, loss_cfg, device, case.bf16)
    batch = make_batch(case.batch_size, size.image_size, torch.Generator().manual_seed(0))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, warmup_s = [], 0.0
    for i in range(case.warmup + case.iters):
        sync()
        start = time.perf_counter()
        out = step(None, batch)
        sync()
        if not out.finite:
            raise RuntimeError(f"non-finite loss in benchmark case {case}")
        if i >= case.warmup:
            times.append(time.perf_counter() - start)
        else:
            warmup_s += time.perf_counter() - start

    trunk_s = trunk_time(model, batch, case.warmup, case.iters, sync, case.bf16)
    extra = {"channels_last": model.field.encoder.channels_last, "host_memory": host_memory}  # as "auto" resolved
    if bf16_applies(device, case.bf16) or model.field.encoder.channels_last:
        # The trunk as the official code (and a revision before the NHWC layout) runs it, float32 and NCHW: the
        # floor of that side's step, for --compare's rest.
        extra["trunk_reference_s"] = trunk_time(model, batch, case.warmup, case.iters, sync, reference=True)
    model.eval()
    one = make_batch(1, size.image_size, torch.Generator().manual_seed(1)).to(device)
    sync()
    start = time.perf_counter()
    with autocast(device, case.bf16):
        model.render_view(one, view_id=0, render_ids=(1,))
    sync()
    render_s = time.perf_counter() - start
    gen_img_s = gen_img_custom_time(model, size, device, case.bf16, sync)

    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    else:
        peak, kind = peak_rss_mb(), "cpu_peak_rss"
    return CaseResult(
        case=case,
        train_step_s_median=statistics.median(times),
        train_step_s_all=times,
        trunk_s=trunk_s,
        render_image_s=render_s,
        gen_img_custom_s=gen_img_s,
        peak_memory_mb=peak,
        memory_kind=kind,
        baseline_rss_mb=baseline,
        parameters=sum(p.numel() for p in model.parameters()),
        extra={"warmup_s": warmup_s, **extra},
    )


def trunk_time(model, batch, warmup: int, iters: int, sync, bf16: bool = False, reference: bool = False) -> float:
    """Median seconds of the image encoder's forward and backward alone (train mode, in the step's precision and
    layout), on as many images as a step encodes: what the convolutional trunk costs, the part of a step no change
    outside it can make cheaper. ``reference``: a float32 NCHW copy of the encoder instead (the official code's)."""
    import copy

    import torch

    from utils.training.steps import autocast

    images = batch.images[:, : model.num_multiviews].flatten(0, 1).to(next(model.parameters()).device)
    encoder = model.field.encoder
    if reference:
        encoder = copy.deepcopy(encoder).to(memory_format=torch.contiguous_format)
        encoder.channels_last, bf16 = False, False
    encoder.train()
    times = []
    for i in range(warmup + iters):
        sync()
        start = time.perf_counter()
        with autocast(images.device, bf16):
            features = encoder(images)
        features.float().backward(torch.ones_like(features, dtype=torch.float32))
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)  # a reference copy's gradients go with the copy
    return statistics.median(times)


def gen_img_custom_time(model, size: Size, device, bf16: bool, sync) -> float:
    """Seconds for one image through the ``gen_img_custom`` path (model already loaded and warm): read the example
    image, resize, encode, render the depth picture and the 256 x 256 x 64 bird's-eye profile."""
    from scripts.common import PRESETS, InferenceModel, image_input, input_pictures, read_image
    from utils.training.steps import autocast

    loaded = InferenceModel(model, model.eval_head, size.image_size, PRESETS["KITTI-360"], device)
    sync()
    start = time.perf_counter()
    with autocast(device, bf16):
        view = image_input(read_image(REPO / "media" / "example" / "0000.png"), "0000", loaded)
        input_pictures(loaded, view)
    sync()
    return time.perf_counter() - start


def _child(case: Case, queue) -> None:
    try:
        queue.put(("ok", asdict(run_case(case))))
    except Exception as error:  # reported by the parent, with the case
        queue.put(("error", f"{type(error).__name__}: {error}"))


def run_isolated(case: Case) -> dict:
    """:func:`run_case` in a fresh spawned process; its result as a dict (or a raised error)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(case, queue))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"benchmark case {case} failed: {payload}")
    return payload


# Runs one case with the benchmark of another revision (in its own worktree): that revision's code, this
# benchmark's case and config overrides (its `build` is replaced so that both sides time the same configuration).
_OTHER_REVISION = r"""
import importlib.util, json, os, sys
from dataclasses import asdict, fields
spec = json.loads(sys.argv[1])
os.environ["KDBTS_HOST_MEMORY"] = spec["host_memory"]  # what a revision with utils/host_memory.py reads itself
if spec["host_memory"] == "reuse":  # this tree's module, so revisions from before it get the setting too
    found = importlib.util.spec_from_file_location("this_tree_host_memory", spec["host_memory_module"])
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    assert module.reuse_freed_memory(), "the host-memory setting did not take"
sys.path.insert(0, ".")
import scripts.benchmark as B
def build(model_kind, size, batch_size, *args, **kwargs):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    with initialize_config_dir(config_dir=str(B.REPO / "configs"), version_base=None):
        cfg = compose(config_name=B.MODEL_CONFIGS[model_kind], overrides=spec["overrides"])
    built = instantiate(cfg.model), instantiate(cfg.loss)
    # revisions whose run_case builds the optimizer from the config take it from here too
    return (*built, instantiate(cfg.trainer.optimizer)) if WITH_OPTIMIZER else built
import inspect
WITH_OPTIMIZER = "make_optimizer" in inspect.getsource(B.run_case)
B.build = build
names = {f.name for f in fields(B.Case)}
case = B.Case(**{k: v for k, v in spec["case"].items() if k in names})
print("RESULT " + json.dumps(asdict(B.run_case(case))))
"""


def run_at_revision(worktree: Path, case: Case, host_memory: str = "system") -> dict:
    """:func:`run_case` of the revision checked out in ``worktree`` (a fresh process), for this ``case``;
    ``host_memory``: "system" runs it with the C library's allocator as it comes (as the official code runs),
    "reuse" with this tree's setting (:mod:`utils.host_memory`), to compare the code alone."""
    size = SIZES[case.size]
    # Revisions before the "auto" layout took a boolean only, and the official code is NCHW: auto runs them NCHW.
    layout = "false" if case.channels_last == "auto" else case.channels_last
    overrides = build_overrides(size, case.batch_size, layout, case.encoder_views)
    module = str(REPO / "utils" / "host_memory.py")
    spec = json.dumps(
        {"case": asdict(case), "overrides": overrides, "host_memory": host_memory, "host_memory_module": module}
    )
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_REVISION, spec], cwd=worktree, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"case {case} at {worktree} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def compare(revision: str, cases: list[Case], rounds: int, old_host_memory: str = "system") -> list[dict]:
    """Every case at ``revision`` and at this tree, alternating (old, new) ``rounds`` times; medians and ratios.
    ``old_host_memory``: the other revision's allocator setting (:func:`run_at_revision`)."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "revision"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), revision], cwd=REPO, check=True)
        try:
            for case in cases:
                old, new = [], []
                for _ in range(rounds):
                    print(f"running {case} at {revision} ...", file=sys.stderr, flush=True)
                    old.append(run_at_revision(worktree, case, old_host_memory))
                    print(f"running {case} here ...", file=sys.stderr, flush=True)
                    new.append(run_isolated(case))
                rows.append(compare_row(case, revision, old, new, old_host_memory))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False)
    return rows


def compare_row(case: Case, revision: str, old: list[dict], new: list[dict], old_host_memory: str = "system") -> dict:
    """Medians over rounds of both sides and their ratios (old / new: > 1 means faster now)."""

    def median(results: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in results)

    row: dict = {"case": asdict(case), "revision": revision, "rounds": len(old)}
    # what the other side reports where its run_case knows it (revisions with utils/host_memory.py), else what was asked
    row["old_host_memory"] = old[0].get("extra", {}).get("host_memory", old_host_memory)
    row["new_host_memory"] = new[0]["extra"]["host_memory"]
    # every timed step of both sides, round by round: the spread behind the medians (this VM's speed drifts)
    row["old_train_step_s_all"] = [r["train_step_s_all"] for r in old]
    row["new_train_step_s_all"] = [r["train_step_s_all"] for r in new]
    for key in ("train_step_s_median", "render_image_s", "gen_img_custom_s", "peak_memory_mb"):
        row[f"old_{key}"], row[f"new_{key}"] = median(old, key), median(new, key)
        row[f"ratio_{key}"] = row[f"old_{key}"] / row[f"new_{key}"]
    # The trunk (encoder forward + backward) is the same code on both sides, but not always in the same precision
    # or layout (--bf16 on a CPU with native bf16, and the NHWC layout, reach the new side only): each side's rest is
    # its step minus its own trunk.
    trunk = median(new, "trunk_s")
    if all("trunk_s" in r for r in old):
        old_trunk = median(old, "trunk_s")
    elif all("trunk_reference_s" in r["extra"] for r in new):  # an old revision without trunk_s: float32 NCHW
        old_trunk = statistics.median(r["extra"]["trunk_reference_s"] for r in new)
    else:
        old_trunk = trunk
    row["trunk_s"], row["old_trunk_s"] = trunk, old_trunk
    row["old_rest_s"] = row["old_train_step_s_median"] - old_trunk
    row["new_rest_s"] = row["new_train_step_s_median"] - trunk
    row["ratio_rest"] = row["old_rest_s"] / row["new_rest_s"]
    return row


def compare_table(rows: list[dict]) -> str:
    header = (
        f"{'case':<26} {'step old':>9} {'step new':>9} {'x':>5} {'rest old':>9} {'rest new':>9} {'x':>5} "
        f"{'render old':>10} {'new':>7} {'x':>5} {'gen_img old':>11} {'new':>7} {'x':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        c = r["case"]
        views = f" {c['encoder_views']}v" if c.get("encoder_views") else ""
        name = f"{c['model']} {c['size']} b{c['batch_size']}{views}"
        lines.append(
            f"{name:<26} {r['old_train_step_s_median']:>9.2f} {r['new_train_step_s_median']:>9.2f} "
            f"{r['ratio_train_step_s_median']:>5.2f} {r['old_rest_s']:>9.2f} {r['new_rest_s']:>9.2f} "
            f"{r['ratio_rest']:>5.2f} {r['old_render_image_s']:>10.2f} {r['new_render_image_s']:>7.2f} "
            f"{r['ratio_render_image_s']:>5.2f} {r['old_gen_img_custom_s']:>11.2f} {r['new_gen_img_custom_s']:>7.2f} "
            f"{r['ratio_gen_img_custom_s']:>5.2f}"
        )
    if rows:
        old, new = rows[0]["old_host_memory"], rows[0]["new_host_memory"]
        lines.append(f"host allocator: old {old}, new {new} (utils/host_memory.py; --old-host-memory)")
    return "\n".join(lines)


def loader_throughput(root: Path, image_size: tuple[int, int], samples: int, workers: int, prepare: bool) -> dict:
    """KITTI-360 samples/s through a DataLoader, on-the-fly resampling vs the preprocessed cache."""
    from torch.utils.data import DataLoader

    from datasets.calibration import DatasetError
    from datasets.kitti_360 import Kitti360Dataset
    from datasets.kitti_360.preprocess import preprocess
    from datasets.sample import collate

    data_path = root / "KITTI-360"
    result: dict = {"samples": samples, "workers": workers, "image_size": list(image_size)}
    if prepare:
        start = time.perf_counter()
        preprocess(data_path, image_size=image_size, workers=max(workers, 1), progress=False)
        result["preprocess_s"] = time.perf_counter() - start
    for mode in (False, True):
        key = "cache" if mode else "on_the_fly"
        try:
            dataset = Kitti360Dataset(
                data_path=data_path,
                split_path=data_path / "splits" / "train_files.txt",
                image_size=image_size,
                preprocessed=mode,
            )
        except (DatasetError, FileNotFoundError, ValueError) as error:  # no (complete) cache: a note, not a number
            result[f"{key}_samples_per_s"] = None
            result[f"{key}_note"] = f"{type(error).__name__}: {error}".splitlines()[0]
            continue
        loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers, collate_fn=collate)
        count, start = 0, None
        for i, _ in enumerate(loader):
            if i == 1:  # the first sample includes worker start-up
                start = time.perf_counter()
            if i >= 1:
                count += 1
            if count >= samples:
                break
        elapsed = time.perf_counter() - start if start is not None else float("nan")
        result[f"{key}_samples_per_s"] = count / elapsed if count else None
        del loader
    return result


def eval_throughput(root: Path, size: Size, frames: int, workers: int, work_dir: Path, device: str) -> dict:
    """Frames/s of both protocols on the synthetic world with a random model: a cold reference cache, then warm."""
    from utils.config import compose_config
    from utils.evaluation.run import evaluate

    common = [
        f"model.field.encoder.resnet_layers={size.resnet_layers}",
        "model.field.encoder.pretrained=false",
        f"data.image_size=[{size.image_size[0]},{size.image_size[1]}]",
        "allow_random_weights=true",
        f"eval.max_frames={frames}",
        f"num_workers={workers}",
        f"device={device}",
    ]
    result: dict = {"frames": frames}
    # The synthetic benchmarks as the demo runs them (lidar reference, exact truth, baselines); the second run of
    # each reads every model-independent reference back from the cache.
    cache = f"eval.cache_dir={work_dir / 'cache'}"
    runs = [
        ("occupancy_cold", "eval_synthetic_occ", root / "KITTI-360", [cache]),
        ("occupancy_warm", "eval_synthetic_occ", root / "KITTI-360", [cache]),
        ("depth_cold", "eval_synthetic_depth", root / "KITTI-Raw", [cache]),
        ("depth_warm", "eval_synthetic_depth", root / "KITTI-Raw", [cache]),
    ]
    for key, name, data_path, extra in runs:
        overrides = [*common, f"data.data_path={data_path}", f"output_dir={work_dir / key}", *extra]
        if name == "eval_synthetic_depth":
            overrides += [
                f"data.pose_path={data_path / 'orb-slam_poses'}",
                f"data.split_dir={data_path / 'splits' / 'synthetic'}",
            ]
        cfg = compose_config(name, overrides)
        start = time.perf_counter()
        evaluate(cfg, work_dir / key)
        elapsed = time.perf_counter() - start
        result[f"{key}_s"] = elapsed
        result[f"{key}_frames_per_s"] = frames / elapsed
    result["occupancy_warm_speedup"] = result["occupancy_cold_s"] / result["occupancy_warm_s"]
    result["depth_warm_speedup"] = result["depth_cold_s"] / result["depth_warm_s"]
    return result


def machine_info(device: str) -> dict:
    import torch

    info = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": mp.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        info["commit"] = commit.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = None
    return info


def table(results: list[dict]) -> str:
    header = (
        f"{'model':<7} {'size':<9} {'device':<7} {'batch':>5} {'bf16':>5} {'ch-last':>7} {'step s':>9} "
        f"{'render s':>9} {'gen_img s':>9} {'peak MB':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        c = r["case"]
        lines.append(
            f"{c['model']:<7} {c['size']:<9} {c['device']:<7} {c['batch_size']:>5} {str(c['bf16']):>5} "
            f"{str(r['extra']['channels_last']):>7} {r['train_step_s_median']:>9.3f} {r['render_image_s']:>9.3f} "
            f"{r['gen_img_custom_s']:>9.3f} {r['peak_memory_mb']:>9.0f}"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_CONFIGS), choices=list(MODEL_CONFIGS))
    parser.add_argument("--sizes", nargs="+", default=["official", "small"], choices=list(SIZES))
    parser.add_argument("--device", default="auto", help="auto (cuda when present, else cpu) | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the size's CPU or CUDA batch")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast of the encoder (CUDA, or a CPU with native bf16)"
    )
    parser.add_argument(
        "--channels-last",
        default="auto",
        choices=["auto", "true", "false"],
        help="the encoder's NHWC layout; auto = the config's rule (CUDA or an AVX-512 CPU); --compare's other "
        "revision runs NCHW unless true",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder (warm-up includes it)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (the median is reported)")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"), help="JSON output file")
    parser.add_argument("--data-root", type=Path, default=None, help="synthetic world root: loader + eval figures")
    parser.add_argument("--prepare-cache", action="store_true", help="build the KITTI-360 cache first (timed)")
    parser.add_argument("--loader-samples", type=int, default=32, help="samples timed per loader mode")
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--eval-frames", type=int, default=8, help="frames per evaluation run")
    parser.add_argument("--skip-train", action="store_true", help="only the data and eval figures")
    parser.add_argument(
        "--encoder-views",
        type=int,
        nargs="+",
        default=[None],
        help="MVBTS / KDBTS cases: encoder views per step (default: the config's 3); several give several cases",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also run every case with the code of git revision REV (a worktree), alternating; report both and ratios",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --compare: (old, new) pairs per case")
    parser.add_argument(
        "--old-host-memory",
        default="system",
        choices=["system", "reuse"],
        help="with --compare: the other revision's host allocator; system = the C library's default, as the official "
        "code runs; reuse = this tree's setting (utils/host_memory.py), to compare the code alone",
    )
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if args.bf16 and not device.startswith("cuda"):
        from utils.training.steps import bf16_applies

        native = bf16_applies(torch.device(device), True)
        print(
            f"note: --bf16 on {device}: {'a bf16 encoder' if native else 'no native bf16 here, float32'}",
            file=sys.stderr,
        )
    cases = []
    for model in [] if args.skip_train else args.models:
        for size_name in args.sizes:
            size = SIZES[size_name]
            batch = args.batch_size or (size.batch_cuda if device.startswith("cuda") else size.batch_cpu)
            for views in args.encoder_views if model != "bts" else [None]:
                flags = (args.bf16, args.warmup, args.iters, args.channels_last, args.compile, views)
                cases.append(Case(model, size_name, device, batch, *flags))
    report: dict = {"machine": machine_info(device)}
    if args.compare:
        report["compare"] = compare(args.compare, cases, args.rounds, args.old_host_memory)
        results = []
    else:
        results = []
        for case in cases:
            print(f"running {case} ...", file=sys.stderr, flush=True)
            results.append(run_isolated(case))
    report["results"] = results
    if args.data_root is not None:
        import tempfile

        if not (args.data_root / "KITTI-360").is_dir():
            sys.exit(
                f"--data-root {args.data_root}: no KITTI-360/ inside; generate: python -m datasets.synthetic --out DIR"
            )
        size = SIZES[args.sizes[0]]
        print("measuring the data loader ...", file=sys.stderr, flush=True)
        report["loader"] = loader_throughput(
            args.data_root, size.image_size, args.loader_samples, args.loader_workers, args.prepare_cache
        )
        print("measuring the evaluation protocols ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as work:
            report["eval"] = eval_throughput(
                args.data_root, size, args.eval_frames, args.loader_workers, Path(work), device
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)
    if results:
        print(table(results))
    if "compare" in report:
        print(compare_table(report["compare"]))
    for section in ("loader", "eval"):
        if section in report:
            print(f"\n{section}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in report[section].items()))
    print(f"\nwritten {args.out}")
    return results


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
