"""``evaluate(cfg)``: load the model, run a protocol over the test frames, write the results.

``cfg.eval`` instantiates the protocol (its ``_target_``: :class:`OccupancyEvaluator` or :class:`DepthEvaluator`)
with its dataset; ``cfg.eval_head`` names the density head that is evaluated and ``cfg.encoder_views`` the views
fed to the encoder (decision 3).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from datasets.sample import collate
from models.frame_roles import resolve_encoder_views
from utils.checkpoints import load_model
from utils.evaluation.common import choose_device
from utils.evaluation.report import format_table, git_commit, save_maps, write_csv, write_json
from utils.host_memory import reuse_freed_memory
from utils.metrics import FrameAverage

log = logging.getLogger(__name__)


def warn_on_other_resizing(run_cfg: DictConfig | None, cfg: DictConfig) -> None:
    """A model sees its inputs resized as in training: say so when the evaluation ``cfg`` resizes otherwise than
    the checkpoint's stored run configuration ``run_cfg`` (None: an official file)."""
    # official files and our checkpoints from before the option were trained on the official (bilinear) resizing
    trained = bool(OmegaConf.select(run_cfg, "data.antialias", default=False)) if run_cfg is not None else False
    used = OmegaConf.select(cfg, "eval.dataset.antialias", default=None)
    if used is not None and trained != bool(used):
        log.warning(
            "the checkpoint was trained on views resized with antialias=%s, this evaluation reads them with "
            "antialias=%s; set data.antialias=%s to evaluate it on the images it was trained on",
            trained,
            used,
            str(trained).lower(),
        )


def evaluate(cfg: DictConfig, output_dir: str | Path) -> dict[str, float]:
    """Run the evaluation described by ``cfg``; returns the frame-averaged metrics."""
    reuse_freed_memory()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = choose_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, model_cfg, run_cfg, source = load_model(
        cfg.model, cfg.checkpoint, cfg.allow_random_weights, cfg.use_checkpoint_config
    )
    model.to(device).eval()
    if cfg.eval_head not in model.field.heads:
        raise ValueError(f"eval_head {cfg.eval_head!r} is not one of the model's heads {list(model.field.heads)}")

    encoder_views = resolve_encoder_views(cfg.encoder_views)
    if cfg.checkpoint is not None:
        warn_on_other_resizing(run_cfg, cfg)
    evaluator = instantiate(cfg.eval, _convert_="all")  # the protocol (_target_) with its dataset
    dataset = evaluator.dataset
    if evaluator.max_frames is not None:
        dataset_view = Subset(dataset, range(min(evaluator.max_frames, len(dataset))))
    else:
        dataset_view = dataset
    loader = DataLoader(dataset_view, batch_size=1, shuffle=False, num_workers=cfg.num_workers, collate_fn=collate)
    log.info(
        "evaluating %s head %r with encoder views %s on %d frames (%s)",
        evaluator.protocol,
        cfg.eval_head,
        encoder_views,
        len(dataset_view),
        device,
    )

    average, rows, worst = FrameAverage(), [], []
    for batch in tqdm(loader, desc=evaluator.protocol, unit="frame"):
        row, maps = evaluator.frame(model, batch.to(device), cfg.eval_head, encoder_views)
        average.update(row)
        rows.append({"sequence": batch.sequence[0], "frame_id": batch.frame_id[0], **row})
        if maps is not None and evaluator.save_worst > 0:
            worst = sorted([*worst, maps], key=lambda m: m.score)[: evaluator.save_worst]
    summary = average.compute()

    for item in worst:
        save_maps(output_dir / "worst_frames", f"{item.name}_oacc{item.score:.3f}", item.maps)
    write_csv(output_dir / "per_frame.csv", rows)
    write_json(
        output_dir / "metrics.json",
        {
            "summary": summary,
            "frames": average.counts(),
            "checkpoint": None if cfg.checkpoint is None else str(cfg.checkpoint),
            # the file a run directory resolved to (its best checkpoint, else its newest)
            "checkpoint_file": None if source is None else str(source),
            "random_weights": cfg.checkpoint is None,
            "git_commit": git_commit(),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "model_config": OmegaConf.to_container(model_cfg, resolve=True),
            "cache": _cache_stats(evaluator),
        },
    )
    print(format_table(summary, average.counts()))
    print(f"results: {output_dir}")
    return summary


def _cache_stats(evaluator) -> dict | None:
    cache = getattr(evaluator, "cache", None)
    return None if cache is None else cache.stats()
