"""The on-disk cache of model-independent references."""

import torch

from utils.occupancy.cache import ReferenceCache
from utils.occupancy.lidar import LidarReference


def _reference():
    return LidarReference(
        occupied=torch.tensor([True, False, True]), visible=torch.tensor([False, True, False]), num_scans=19
    )


def test_second_call_reads_the_cache(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _reference()

    first = ReferenceCache(tmp_path, "kitti_360", {"num_scans": 20}).get("seq", 7, compute)
    cache = ReferenceCache(tmp_path, "kitti_360", {"num_scans": 20})  # a second run
    second = cache.get("seq", 7, compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 0)
    assert torch.equal(first.occupied, second.occupied) and torch.equal(first.visible, second.visible)
    assert second.num_scans == 19
    assert cache.path("seq", 7).is_file()


def test_other_parameters_or_frames_do_not_share_entries(tmp_path):
    ReferenceCache(tmp_path, "kitti_360", {"num_scans": 20}).get("seq", 7, _reference)
    other = ReferenceCache(tmp_path, "kitti_360", {"num_scans": 10})
    other.get("seq", 7, _reference)
    other.get("seq", 8, _reference)
    assert other.misses == 2


def test_disabled_cache_always_computes():
    cache = ReferenceCache(None, "kitti_360", {})
    cache.get("seq", 1, _reference)
    cache.get("seq", 1, _reference)
    assert cache.misses == 2 and cache.path("seq", 1) is None


def test_any_kind_of_tensors_round_trips_and_kinds_do_not_collide(tmp_path):
    cache = ReferenceCache(tmp_path, "kitti_raw", {"data_path": "/x"})
    depth = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    cache.tensors("exact_depth_l", "drive", 3, lambda: {"depth": depth})
    cache.tensors("exact_depth_r", "drive", 3, lambda: {"depth": -depth})
    again = ReferenceCache(tmp_path, "kitti_raw", {"data_path": "/x"})
    left = again.tensors("exact_depth_l", "drive", 3, lambda: {"depth": torch.zeros(1)})["depth"]
    right = again.tensors("exact_depth_r", "drive", 3, lambda: {"depth": torch.zeros(1)})["depth"]
    assert torch.equal(left, depth) and torch.equal(right, -depth)
    assert again.stats()["by_kind"] == {
        "exact_depth_l": {"hits": 1, "misses": 0},
        "exact_depth_r": {"hits": 1, "misses": 0},
    }
    assert not list(tmp_path.rglob("*.tmp.npz"))  # written atomically, nothing left behind
