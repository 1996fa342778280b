"""Writing what the render scripts produce: PNG images, MP4 videos (OpenCV), side-by-side frames, plots.

Images are float tensors (3, H, W) with colours in [0, 1], as :mod:`utils.visualization` returns them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

# Tried in this order: H.264 plays everywhere but only some OpenCV builds can write it; MPEG-4 part 2 always works.
VIDEO_CODECS = ("avc1", "mp4v")


def to_bgr_uint8(image: Tensor) -> np.ndarray:
    """Colours (3, H, W) in [0, 1] -> an OpenCV image (H, W, 3) uint8 in BGR order."""
    rgb = (image.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[..., ::-1])


def save_png(path: str | Path, image: Tensor) -> Path:
    """Write colours (3, H, W) in [0, 1] as an 8-bit RGB PNG (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), to_bgr_uint8(image)):
        raise OSError(f"could not write {path}")
    return path


def pad_to(image: Tensor, height: int, width: int) -> Tensor:
    """Centre an image (3, h, w) on a black canvas (3, height, width) (h <= height, w <= width)."""
    _, h, w = image.shape
    left, top = (width - w) // 2, (height - h) // 2
    return F.pad(image, (left, width - w - left, top, height - h - top))


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """Nearest-neighbour resize of an image (3, h, w) -> (3, height, width) (keeps occupancy maps crisp)."""
    return F.interpolate(image[None], size=(height, width), mode="nearest")[0]


def video_frame(rows: list[Tensor], side: Tensor | None = None, width: int | None = None) -> Tensor:
    """Images (3, h_i, w_i) stacked top to bottom, each centred on black at ``width`` (default: the widest);
    ``side`` (3, h, w), if given, is scaled to the stack's height (keeping its aspect) and put on the right.
    Returns (3, H, W)."""
    width = max([image.shape[2] for image in rows] + ([] if width is None else [width]))
    column = torch.cat([pad_to(image, image.shape[1], width) for image in rows], dim=1)  # (3, H, width)
    if side is None:
        return column
    height = column.shape[1]
    side = resize(side, height, round(side.shape[2] * height / side.shape[1]))
    return torch.cat([column, side], dim=2)


class VideoWriter:
    """MP4 writer for frames (3, H, W) in [0, 1], opened at the first frame; also saves each frame as a PNG in
    ``frames_dir`` when given. The codec is the first of :data:`VIDEO_CODECS` this OpenCV build can write.

    Use as a context manager; every frame must have the size of the first. Odd sizes are padded to even ones
    (H.264 and most players need them).
    """

    def __init__(self, path: str | Path, fps: float = 10.0, frames_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.frames_dir = None if frames_dir is None else Path(frames_dir)
        self.codec: str | None = None
        self.count = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None  # (W, H) of the video

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.frames_dir is not None:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # a failed probe is expected, not news
        try:
            for codec in VIDEO_CODECS:
                writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
                if writer.isOpened():
                    self._writer, self.codec = writer, codec
                    break
                writer.release()
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if self._writer is None:
            raise OSError(f"OpenCV cannot write {self.path} with any of the codecs {VIDEO_CODECS}")
        self._size = (width, height)
        log.info("writing %s (%s, %dx%d, %g fps)", self.path, self.codec, width, height, self.fps)

    def write(self, frame: Tensor) -> None:
        """Append a frame (3, H, W) in [0, 1]."""
        _, H, W = frame.shape
        if self._writer is None:
            self._open(W + W % 2, H + H % 2)
        if self._size != (W + W % 2, H + H % 2):
            raise ValueError(f"frame {self.count} is {W}x{H}, the video is {self._size[0]}x{self._size[1]}")
        if self.frames_dir is not None:
            save_png(self.frames_dir / f"frame_{self.count:05d}.png", frame)
        self._writer.write(to_bgr_uint8(F.pad(frame, (0, W % 2, 0, H % 2))))
        self.count += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("wrote %d frames to %s", self.count, self.path)


def show_images(images: Mapping[str, Tensor], title: str | None = None) -> None:
    """Show titled images (3, H, W) in one matplotlib window, one row each (``--plot``)."""
    import matplotlib.pyplot as plt  # interactive backend: imported only when plotting

    fig, axes = plt.subplots(len(images), 1, figsize=(10, 3 * len(images)), squeeze=False)
    for ax, (name, image) in zip(axes[:, 0], images.items(), strict=True):
        ax.imshow(image.permute(1, 2, 0).clamp(0.0, 1.0).numpy())
        ax.set_title(name)
        ax.set_axis_off()
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    plt.show()
