"""The KITTI-360 lidar occupancy protocol (REFERENCE 7.1): grids, lidar reference, cache, baselines."""
