"""The preprocessing command: folder names, idempotence, resumability, and the loader using the cache."""

import logging

import numpy as np
import pytest
import torch

from datasets.calibration import DatasetError
from datasets.io import write_rgb
from datasets.kitti_360 import Kitti360Dataset
from datasets.kitti_360.images import resize_perspective
from datasets.kitti_360.layout import fisheye_cache_folder, perspective_cache_folder
from datasets.kitti_360.preprocess import main, preprocess
from tests.datasets.kitti_360.world import FRAMES, PERSP_H, PERSP_W, SEQ_A, SEQ_B

SIZE = (24, 88)
IMAGES = 4 * sum(len(f) for f in FRAMES.values())  # every raw image of every camera


def board(height: int, width: int) -> np.ndarray:
    """uint8 RGB (height, width, 3): black and white alternating every pixel."""
    v, u = np.mgrid[:height, :width]
    return np.repeat((((u + v) % 2) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_antialiased_resize_averages_what_bilinear_skips():
    """Shrinking 1408 x 376 to 192 x 64: INTER_LINEAR reads 2 x 2 of the ~7 x 6 source pixels under a target pixel
    (a one-pixel checkerboard comes out as noise), INTER_AREA their mean (grey); same size: untouched."""
    image = board(376, 1408)
    official, antialiased = resize_perspective(image, (64, 192)), resize_perspective(image, (64, 192), antialias=True)
    assert official.shape == antialiased.shape == (64, 192, 3) and official.dtype == np.float32
    assert official.std() > 0.1
    assert antialiased.std() < 0.3 * official.std() and abs(antialiased.mean() - 0.5) < 0.02
    assert np.array_equal(resize_perspective(image, (376, 1408), antialias=True), image / np.float32(255))


def test_cache_folder_names_match_the_official_ones():
    assert perspective_cache_folder((192, 640)) == "data_192x640"
    assert fisheye_cache_folder((192, 640), (0.0, -15.0)) == "data_192x640_0x-15"
    assert fisheye_cache_folder((192, 640), (0, -7.5), "exact") == "data_192x640_0x-7.5_exact"
    assert perspective_cache_folder((64, 192), antialias=True) == "data_64x192_antialiased"
    assert fisheye_cache_folder((64, 192), (0, -15), "exact", antialias=True) == "data_64x192_0x-15_exact_antialiased"


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


def test_antialiased_cache_is_separate_and_the_loader_reads_it(world, caplog):
    """``--antialias`` writes its own folders (an official cache next to it stays valid) and a loader with
    ``antialias=True`` reads them, with what it would compute on the fly."""
    small = (8, 22)  # the test world's 176 x 47 images shrunk 8x: bilinear reads 2 x 2 of ~8 x 6 pixels
    # view 0 of sample 3 is frame 4 of SEQ_A: give it pixel noise, detail far finer than the target
    noise = np.random.default_rng(0).integers(0, 256, size=(PERSP_H, PERSP_W, 3), dtype=np.uint8)
    write_rgb(world / "data_2d_raw" / SEQ_A / "image_00" / "data_rect" / "0000000004.png", noise)
    live = Kitti360Dataset(world, image_size=small, antialias=True)[3]
    official = Kitti360Dataset(world, image_size=small)[3]
    assert live.images[0].std() < 0.5 * official.images[0].std()  # the mean of ~48 pixels against ~4
    main(["-d", str(world), "--size", "8", "22", "--workers", "1", "--antialias", "--sequences", SEQ_A, SEQ_B])
    for camera, folder in [("00", "data_8x22_antialiased"), ("02", "data_8x22_0x-15_antialiased")]:
        assert len(list((world / "data_2d_raw" / SEQ_A / f"image_{camera}" / folder).iterdir())) == len(FRAMES[SEQ_A])
    assert not (world / "data_2d_raw" / SEQ_A / "image_00" / "data_8x22").exists()
    with caplog.at_level(logging.INFO, logger="datasets.kitti_360"):
        cached = Kitti360Dataset(world, image_size=small, antialias=True, preprocessed=True)[3]
    assert "using the preprocessed cache for 8 of 8" in caplog.text
    assert torch.allclose(cached.images, live.images, atol=2.5 / 255)
    # the official cache of that size does not stand in for it
    preprocess(world, small, workers=1, progress=False)
    (world / "data_2d_raw" / SEQ_A / "image_00" / "data_8x22_antialiased" / "0000000000.png").unlink()
    with pytest.raises(DatasetError, match=r"data_8x22_antialiased/0000000000\.png.*\nRun: .* --antialias"):
        Kitti360Dataset(world, image_size=small, antialias=True, preprocessed=True)


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
