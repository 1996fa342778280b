"""The on-disk cache of the lidar reference."""

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
