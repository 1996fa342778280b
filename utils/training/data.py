"""Data loaders for training and validation."""

from __future__ import annotations

import logging
from pathlib import Path

import ignite.distributed as idist
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Subset

from datasets.calibration import DatasetError
from datasets.sample import Sample, collate

log = logging.getLogger(__name__)

BAD_FRAMES = "bad_frames.txt"
BAD_FRAME_POLICIES = ("error", "skip")


class SkipBadFrames(Dataset):
    """``data.on_bad_frame=skip``: a sample whose files cannot be read is logged, listed in ``<run>/bad_frames.txt``
    and replaced by the next readable one; when more than ``max_share`` of the dataset has been bad the run stops.

    The list is appended by every loader worker, so the share counts all of them.
    """

    def __init__(self, dataset: Dataset, record: Path, max_share: float) -> None:
        self.dataset, self.record, self.max_share = dataset, Path(record), max_share

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        for offset in range(len(self.dataset)):
            candidate = (index + offset) % len(self.dataset)
            try:
                return self.dataset[candidate]
            except DatasetError as err:
                self._note(candidate, err)
        raise DatasetError(f"no sample of the dataset could be read; see {self.record}")

    def _note(self, index: int, err: DatasetError) -> None:
        reason = " ".join(str(err).split())
        with open(self.record, "a") as f:
            f.write(f"{index}\t{reason}\n")
        bad = len(self.record.read_text().splitlines())
        log.warning("bad frame %d skipped (%d so far): %s", index, bad, reason)
        if bad > self.max_share * len(self.dataset):
            raise DatasetError(
                f"{bad} bad frames, more than data.max_bad_share={self.max_share} of the {len(self.dataset)} samples: "
                f"the data looks broken, not a few files. The list is in {self.record}."
            )


def first_n(dataset: Dataset, length: int) -> Dataset:
    """The first ``length`` samples of ``dataset`` (all of them if it is shorter); the official val cap."""
    if length >= len(dataset):
        return dataset
    return Subset(dataset, range(length))


def setup_data(data_cfg: DictConfig, trainer_cfg: DictConfig, output_dir: Path) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders; under distributed training each process gets its share of the batch.

    Datasets are built on rank 0 first, so one process at a time does any first-time work (scans, caches).
    ``data.on_bad_frame``: ``error`` (a sample that cannot be read stops the run, naming the file) or ``skip``
    (:class:`SkipBadFrames`, up to ``data.max_bad_share`` of the training set).
    """
    if data_cfg.on_bad_frame not in BAD_FRAME_POLICIES:
        raise ValueError(f"data.on_bad_frame={data_cfg.on_bad_frame!r}: use one of {list(BAD_FRAME_POLICIES)}")
    with idist.one_rank_first():
        train_set = instantiate(data_cfg.train)
        val_set = instantiate(data_cfg.val)
    if data_cfg.on_bad_frame == "skip":
        train_set = SkipBadFrames(train_set, Path(output_dir) / BAD_FRAMES, data_cfg.max_bad_share)
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
