"""Data loaders for training and validation."""

from __future__ import annotations

import logging

import ignite.distributed as idist
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Subset

from datasets.sample import collate

log = logging.getLogger(__name__)


def first_n(dataset: Dataset, length: int) -> Dataset:
    """The first ``length`` samples of ``dataset`` (all of them if it is shorter); the official val cap."""
    if length >= len(dataset):
        return dataset
    return Subset(dataset, range(length))


def setup_data(data_cfg: DictConfig, trainer_cfg: DictConfig) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders; under distributed training each process gets its share of the batch.

    Datasets are built on rank 0 first, so one process at a time does any first-time work (scans, caches).
    """

    with idist.one_rank_first():
        train_set = instantiate(data_cfg.train)
        val_set = instantiate(data_cfg.val)
    log.info("datasets: %d training samples, %d validation samples", len(train_set), len(val_set))
    if len(train_set) < trainer_cfg.batch_size:
        raise ValueError(
            f"the training set has {len(train_set)} samples, fewer than one batch of {trainer_cfg.batch_size}"
        )
    train_loader = idist.auto_dataloader(
        train_set,
        batch_size=trainer_cfg.batch_size,
        num_workers=trainer_cfg.num_workers,
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        persistent_workers=trainer_cfg.num_workers > 0,
    )
    val_loader = idist.auto_dataloader(
        val_set, batch_size=1, num_workers=trainer_cfg.num_workers, shuffle=False, drop_last=False, collate_fn=collate
    )
    return train_loader, val_loader
