"""The preprocessing command: folder names, idempotence, resumability, and the loader using the cache."""

import logging

import pytest
import torch

from datasets.calibration import DatasetError
from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.layout import fisheye_cache_folder, perspective_cache_folder
from datasets.kitti_360.preprocess import main, preprocess
from tests.datasets.kitti_360.world import FRAMES, SEQ_A, SEQ_B

SIZE = (24, 88)
IMAGES = 4 * sum(len(f) for f in FRAMES.values())  # every raw image of every camera


def test_cache_folder_names_match_the_official_ones():
    assert perspective_cache_folder((192, 640)) == "data_192x640"
    assert fisheye_cache_folder((192, 640), (0.0, -15.0)) == "data_192x640_0x-15"
    assert fisheye_cache_folder((192, 640), (0, -7.5), "exact") == "data_192x640_0x-7.5_exact"


def test_preprocess_writes_the_folders_and_a_second_run_skips(world):
    threads = torch.get_num_threads()
    report = preprocess(world, SIZE, workers=1, progress=False)
    # in-process conversion leaves the caller's thread count alone (a training started after it keeps its cores)
    assert torch.get_num_threads() == threads
    assert (report.written, report.skipped) == (IMAGES, 0)
    for sequence, frames in FRAMES.items():
        for camera, folder in [("00", "data_24x88"), ("01", "data_24x88"), ("02", "data_24x88_0x-15")]:
            out = world / "data_2d_raw" / sequence / f"image_{camera}" / folder
            assert sorted(p.name for p in out.iterdir()) == [f"{f:010d}.png" for f in frames]
    assert not list(world.rglob("*.tmp"))
    again = preprocess(world, SIZE, workers=1, progress=False)
    assert (again.written, again.skipped) == (0, IMAGES)


def test_interrupted_run_is_resumed(world):
    preprocess(world, SIZE, workers=1, sequences=[SEQ_B], progress=False)
    target = world / "data_2d_raw" / SEQ_B / "image_03" / "data_24x88_0x-15" / "0000000002.png"
    target.unlink()
    target.with_name(target.name + ".tmp").write_bytes(b"half written")  # what an interrupted write leaves
    report = preprocess(world, SIZE, workers=1, sequences=[SEQ_B], progress=False)
    assert report.written == 1 and target.is_file()


def test_loader_uses_the_cache_and_says_so(world, caplog):
    with caplog.at_level(logging.INFO, logger="datasets.kitti_360"):
        live = Kitti360Dataset(world, image_size=SIZE)[3]
    assert "resizing/resampling on the fly for 8 of 8" in caplog.text
    main(["-d", str(world), "--size", "24", "88", "--workers", "1"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datasets.kitti_360"):
        ds = Kitti360Dataset(world, image_size=SIZE)
    assert "using the preprocessed cache for 8 of 8" in caplog.text and "on the fly" not in caplog.text
    assert ds._reader.uses_cache(SEQ_A, "02")
    cached = ds[3]
    assert torch.allclose(cached.images, live.images, atol=2.5 / 255)
    assert torch.equal(cached.cam_to_world, live.cam_to_world)


def test_incomplete_cache_falls_back_or_fails_when_required(world, caplog):
    preprocess(world, SIZE, workers=1, progress=False)
    missing = world / "data_2d_raw" / SEQ_A / "image_01" / "data_24x88" / "0000000005.png"
    missing.unlink()
    with caplog.at_level(logging.INFO, logger="datasets.kitti_360"):
        ds = Kitti360Dataset(world, image_size=SIZE)
    assert not ds._reader.uses_cache(SEQ_A, "01") and ds._reader.uses_cache(SEQ_A, "00")
    assert f"on the fly for 1 of 8 (sequence, camera) pairs ({SEQ_A}/image_01)" in caplog.text
    with pytest.raises(DatasetError, match=r"image_01/data_24x88/0000000005\.png.*\nRun: python -m datasets"):
        Kitti360Dataset(world, image_size=SIZE, preprocessed=True)
    # Only the frames the samples need count: without stereo, image_01 is not read.
    Kitti360Dataset(world, image_size=SIZE, preprocessed=True, return_stereo=False)


def test_exact_model_cache_is_separate(world):
    preprocess(world, SIZE, fisheye_model="exact", workers=1, sequences=[SEQ_B], progress=False)
    assert (world / "data_2d_raw" / SEQ_B / "image_02" / "data_24x88_0x-15_exact" / "0000000000.png").is_file()
    assert not (world / "data_2d_raw" / SEQ_B / "image_02" / "data_24x88_0x-15").exists()


@pytest.mark.slow  # spawns two interpreters that import torch (~10 s)
def test_parallel_workers(world):
    report = preprocess(world, SIZE, workers=2, sequences=[SEQ_B], progress=False)
    assert report.written == 4 * len(FRAMES[SEQ_B])
    assert len(list((world / "data_2d_raw" / SEQ_B / "image_02" / "data_24x88_0x-15").iterdir())) == 5


def test_bad_files_are_all_reported_and_the_others_written(world, capsys):
    bad = [
        world / "data_2d_raw" / SEQ_A / "image_00" / "data_rect" / "0000000003.png",
        world / "data_2d_raw" / SEQ_B / "image_02" / "data_rgb" / "0000000001.png",
    ]
    for path in bad:
        path.write_bytes(b"not a png")
    report = preprocess(world, SIZE, workers=1, progress=False)
    assert report.written == IMAGES - 2 and len(report.failed) == 2
    assert all(any(str(path) in line and "Corrupt or unreadable" in line for line in report.failed) for path in bad)
    with pytest.raises(SystemExit) as err:  # the command: both files listed, a non-zero exit
        main(["-d", str(world), "--size", "24", "88", "--workers", "1"])
    assert "2 images could not be preprocessed" in str(err.value)
    assert all(str(path) in str(err.value) for path in bad)
