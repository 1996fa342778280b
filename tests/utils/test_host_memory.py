"""The host allocator setting: freed large blocks stay with the process for reuse, unless turned off.

Each case runs in a fresh interpreter: the setting is process-wide and lasts for the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc")

# Allocates and writes a 64 MiB tensor, frees it, and reports the resident set before, while held and after.
_PROBE = r"""
import json, os, sys
import torch
from utils.host_memory import reuse_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

first = reuse_freed_memory()
again = reuse_freed_memory()
before = resident_mb()
block = torch.empty(16 * 2**20).fill_(1.0)
held = resident_mb()
del block
after = resident_mb()
print(json.dumps({"first": first, "again": again, "before": before, "held": held, "after": after}))
"""


def probe(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KDBTS_HOST_MEMORY"}
    if env_value is not None:
        env["KDBTS_HOST_MEMORY"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _is_glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _is_glibc(), reason="the setting exists only in glibc's malloc")
def test_freed_large_blocks_stay_for_reuse():
    result = probe(None)
    assert result["first"] is True and result["again"] is True  # in effect, and a second call says the same
    assert result["held"] - result["before"] > 60  # the 64 MiB block was written
    # freed, it stays in the heap for the next request: the resident set does not fall back
    assert result["held"] - result["after"] < 4


def test_system_choice_leaves_the_allocator_alone():
    result = probe("system")
    assert result["first"] is False and result["again"] is False
    assert result["held"] - result["before"] > 60
    # glibc serves a block this large with its own mapping and unmaps it when freed
    assert result["held"] - result["after"] > 60


def test_an_unknown_choice_is_refused_with_the_variable_named(monkeypatch):
    import utils.host_memory as host_memory

    host_memory.reuse_freed_memory.cache_clear()  # this process may have answered already
    monkeypatch.setenv("KDBTS_HOST_MEMORY", "pooled")
    with pytest.raises(ValueError, match=r"KDBTS_HOST_MEMORY='pooled': use reuse \(the default\) or system"):
        host_memory.reuse_freed_memory()
    with pytest.raises(ValueError, match="pooled"):  # and again: a typo is never taken for the default later on
        host_memory.reuse_freed_memory()
