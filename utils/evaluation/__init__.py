"""Evaluation: the official lidar-occupancy and depth protocols, baselines and exact synthetic benchmarks."""
