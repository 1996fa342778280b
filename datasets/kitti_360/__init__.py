"""KITTI-360 loader (official on-disk layout), its preprocessing command and split files."""

from datasets.kitti_360.dataset import Kitti360Dataset

__all__ = ["Kitti360Dataset"]
