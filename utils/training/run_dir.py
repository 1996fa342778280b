"""A training run owns its output directory, and a resumed run keeps the configuration it was started with.

* :func:`claim_run_directory`: at the start a manifest ``run.json`` (run id, config name, git commit, command,
  start times) is written into the output directory. A fresh run refuses a directory that holds another run (a
  manifest, checkpoints or TensorBoard events), naming it and the ways out; a resumed run continues the run
  of its checkpoint. So rolling clean-up and best-checkpoint lookup only ever see the run's own files.
* :func:`release_run_directory`: a fresh run that fails before it has saved a checkpoint (a dataset that is not
  where the config says, weights that do not fit) gives its directory back, so the same command runs again once
  the cause is fixed.
* :func:`resume_config`: the configuration stored in the checkpoint against the new one. Model, data and loss
  differences are an error listing the keys (old -> new); the keys of :data:`SAFE_KEYS` (iteration target,
  logging, workers, device, where things are) may change, with a warning; without an explicit new target the
  stored one stands.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from utils.checkpoints import BEST_PREFIX, TRAINING_PREFIX

log = logging.getLogger(__name__)

MANIFEST = "run.json"
# Keys a resumed run may change (dotted prefixes): the target, logging, workers, device, launch, locations.
SAFE_KEYS = (
    "name",
    "trainer.max_iters",
    "trainer.num_epochs",
    "trainer.log_every",
    "trainer.num_workers",
    "trainer.device",
    "trainer.bf16",
    "trainer.compile",
    "trainer.validate_every",
    "trainer.validate_at_start",
    "trainer.checkpoint_every",
    "trainer.n_saved",
    "trainer.n_saved_best",
    "trainer.visualize_profile",
    "trainer.output_dir",
    "trainer.resume_from",
    "trainer.init_from",
    "trainer.init_new_heads",
    "trainer.backend",
    "trainer.nproc_per_node",
    "data.val.length",
)
SAFE_SUFFIXES = (".data_path", ".pose_path", ".split_dir")  # where the same data lies, not what it is
TARGET_KEYS = ("trainer.max_iters", "trainer.num_epochs")
# Keys added after runs were made, with the value an older run's config meant by leaving them out.
IMPLICIT_DEFAULTS = {
    "data.antialias": False,
    "data.train.antialias": False,
    "data.val.dataset.antialias": False,
}


class RunDirectoryError(RuntimeError):
    """The output directory belongs to another run."""


class ResumeConfigError(ValueError):
    """A resumed run's configuration differs from the stored one in keys that change the model, data or loss."""


@dataclass
class RunManifest:
    """What ``run.json`` records about the run that owns a directory."""

    run_id: str
    name: str
    started: str
    commit: str | None
    command: str
    starts: list[str] = field(default_factory=list)  # every start of this run: the first, then each resume

    def describe(self) -> str:
        return f"run {self.run_id} ({self.name}, started {self.started})"


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def read_manifest(directory: Path) -> RunManifest | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    return RunManifest(**json.loads(path.read_text()))


def _write_manifest(directory: Path, manifest: RunManifest) -> None:
    path = directory / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=1) + "\n")
    os.replace(tmp, path)


CHECKPOINT_PATTERNS = (f"{TRAINING_PREFIX}_*.pt", f"{BEST_PREFIX}_*.pt")
EVENTS_PATTERN = "events.out.tfevents.*"


def _files(directory: Path, patterns: Collection[str]) -> list[str]:
    return sorted(p.name for pattern in patterns for p in directory.glob(pattern))


def claim_run_directory(directory: Path, name: str, resumed_run_id: str | None) -> RunManifest:
    """Take ``directory`` for a fresh run (``resumed_run_id`` None) or for resuming the run ``resumed_run_id``;
    write the manifest and return it. A directory owned by another run is a :class:`RunDirectoryError`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = read_manifest(directory)
    now = _now()
    if resumed_run_id is not None:
        if existing is not None and existing.run_id != resumed_run_id:
            raise RunDirectoryError(
                f"{directory} belongs to {existing.describe()}, but the checkpoint to resume is of run "
                f"{resumed_run_id}. Resume into that run's own directory, or set trainer.output_dir to a new one."
            )
        manifest = existing or RunManifest(resumed_run_id, name, now, git_commit(), " ".join(sys.argv))
    else:
        checkpoints = _files(directory, CHECKPOINT_PATTERNS)
        leftovers = checkpoints + _files(directory, (EVENTS_PATTERN,))  # a run from before manifests existed
        if existing is not None or leftovers:
            owner = existing.describe() if existing is not None else f"an earlier run ({', '.join(leftovers[:4])})"
            if checkpoints:
                ways = f"Either continue that run: trainer.resume_from={directory}, or start the new one elsewhere"
            else:  # a run still starting up, or one killed before its first checkpoint: nothing to resume from
                claim = directory / MANIFEST if existing is not None else f"its files in {directory}"
                ways = (
                    f"It has saved no checkpoint yet. If it is still running, start the new one elsewhere; if it was "
                    f"killed before its first checkpoint, delete {claim} to start over there, or start elsewhere"
                )
            raise RunDirectoryError(
                f"{directory} already belongs to {owner}; a new run would mix its checkpoints and logs with it. "
                f"{ways}: trainer.output_dir=<a new directory>."
            )
        manifest = RunManifest(uuid.uuid4().hex[:12], name, now, git_commit(), " ".join(sys.argv))
    manifest.starts.append(now)
    _write_manifest(directory, manifest)
    log.info("%s owns %s", manifest.describe(), directory)
    return manifest


def release_run_directory(directory: Path, run_id: str) -> bool:
    """Give back the directory of the fresh run ``run_id`` that failed before saving a checkpoint: its manifest and
    TensorBoard files are removed (they hold nothing to resume from), so the same command can run there again once
    the cause of the failure is fixed. A directory with a checkpoint, or owned by another run, is left as it is.
    Returns whether the directory was released."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None or manifest.run_id != run_id or _files(directory, CHECKPOINT_PATTERNS):
        return False
    for name in _files(directory, (EVENTS_PATTERN,)):
        (directory / name).unlink()
    (directory / MANIFEST).unlink()
    log.info("run %s saved no checkpoint: %s is free for the next run", run_id, directory)
    return True


def _flatten(container: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(container, Mapping):
        out: dict[str, Any] = {}
        for key, value in container.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: container}


def _is_safe(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in SAFE_KEYS) or key.endswith(SAFE_SUFFIXES)


def resume_config(stored_yaml: str, new: DictConfig, explicit: Collection[str] = ()) -> DictConfig:
    """The configuration to resume with: ``new``, checked against the stored one (see the module docstring).

    ``explicit``: the keys given on the command line; the iteration target (:data:`TARGET_KEYS`) changes only if
    one of them is.
    """
    stored = OmegaConf.create(stored_yaml)
    old = _flatten(OmegaConf.to_container(stored, resolve=True))
    cur = _flatten(OmegaConf.to_container(new, resolve=True))
    missing = "<absent>"
    old = {**{k: v for k, v in IMPLICIT_DEFAULTS.items() if k in cur}, **old}
    changed = {k: (old.get(k, missing), cur.get(k, missing)) for k in sorted(old.keys() | cur.keys())}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    unsafe = {k: v for k, v in changed.items() if not _is_safe(k)}
    if unsafe:
        listing = "\n  ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in unsafe.items())
        raise ResumeConfigError(
            f"the configuration differs from the one the checkpoint was trained with in {len(unsafe)} key(s) that "
            f"change the model, the data or the loss:\n  {listing}\nResume with the original values (the stored "
            f"config is in the checkpoint and in .hydra/ of the run), or start a new run with init_from=<checkpoint>."
        )
    effective = new.copy()
    for key in TARGET_KEYS:
        if key in old and key not in explicit and old[key] != cur.get(key, missing):
            OmegaConf.update(effective, key, old[key], force_add=True)
            log.info("resume: keeping the run's %s=%s (pass it on the command line to change it)", key, old[key])
            changed.pop(key, None)
    for key, (a, b) in changed.items():
        log.warning("resume: %s changed: %r -> %r", key, a, b)
    return effective


def explicit_keys(overrides: Collection[str]) -> set[str]:
    """Config keys set by Hydra command-line overrides (``key=value``, ``+key=value``, ``++key=value``)."""
    keys = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "=" in override and not key.startswith("hydra."):
            keys.add(key)
    return keys
