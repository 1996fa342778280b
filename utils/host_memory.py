"""Keep freed host memory for reuse instead of handing it back to the kernel after every tensor.

A CPU training step at the official size makes dozens of fresh buffers of 30-130 MB (the heads' hidden layer is
(points x views) x 128 floats per chunk, its ReLU, their gradients, the feature maps' gradients). glibc's ``malloc``
serves any request over 32 MB with its own ``mmap`` and unmaps it on ``free``, so every such buffer is new memory and
its first write page-faults through all of it: filling a fresh 64 MB buffer takes 30-75 ms on this project's VM,
3-4 ms when the memory is reused. With ``mmap`` off (``M_MMAP_MAX`` = 0) the large blocks come from the heap, and a
high ``M_TRIM_THRESHOLD`` keeps what is freed there for the next request (README, "Performance": the MVBTS and KD
steps 1.07-1.37x faster, BTS level, peak RSS up to ~0.3 GB higher, since the heap holds on to its peak).

:func:`reuse_freed_memory` is called once per process by training, evaluation and the scripts. It changes no
result, only where memory comes from; ``KDBTS_HOST_MEMORY=system`` (the environment variable) leaves the allocator
as it is. Nothing happens outside glibc (macOS, musl) or with CUDA tensors, whose memory torch caches itself.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV_VAR = "KDBTS_HOST_MEMORY"
# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Freed memory at the top of the heap kept up to this much (the largest value mallopt takes, ~2 GiB): a step's
# buffers are reused, and a process that shrinks for good still returns what is beyond it.
TRIM_THRESHOLD = 2**31 - 1


@functools.cache  # once per process; a refusal is not cached, so a typo is refused on every call
def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from its heap and keep what is freed for reuse (once per process;
    later calls return the first answer). True when it is in effect."""
    choice = os.environ.get(ENV_VAR, "reuse")
    if choice not in ("reuse", "system"):
        raise ValueError(f"{ENV_VAR}={choice!r}: use reuse (the default) or system")
    if choice == "system":
        log.info("%s=system: host memory is allocated and freed as the C library does by default", ENV_VAR)
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        log.debug("not glibc: the host allocator stays as it is")
        return False
    if not (mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1):
        log.warning("glibc refused the allocator settings (mallopt): host memory is freed as by default")
        return False
    log.debug("host allocator: freed memory kept for reuse (%s=system turns this off)", ENV_VAR)
    return True


def _glibc_mallopt():
    """glibc's ``mallopt`` (int, int) -> int, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has mallopt as a stub)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
