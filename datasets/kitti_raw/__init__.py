"""KITTI-Raw: stereo colour frames, ORB-SLAM3 poses and Eigen-split depth ground truth."""

from datasets.kitti_raw.dataset import KittiRawDataset

__all__ = ["KittiRawDataset"]
