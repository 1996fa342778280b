"""Loading official BTS / MVBTS / KDBTS checkpoints into :class:`~models.density_field.DensityField`.

Official files are ``{"model": state_dict, ...}`` (plus ``trainer`` / ``optimizer`` / ``lr_scheduler``
in training checkpoints; REFERENCE 1.3 item 11). Their keys follow the official module nesting
(``renderer.net.encoder.encoder.encoder.*`` ...). They are renamed to ours by explicit rules; every key is
either mapped, checked-and-dropped (constant buffers) or ignored bookkeeping, and anything else is an error.
Loading never uses ``strict=False``: missing, unexpected or mis-shaped keys raise an error listing them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from models.density_field import MULTI_VIEW_HEAD, SINGLE_VIEW_HEAD, DensityField
from models.positional_encoding import encoding_constants

log = logging.getLogger(__name__)

NET = "renderer.net."
BACKBONE = NET + "encoder.encoder.encoder."
DECODER = NET + "encoder.decoder.decoder."
PE_BUFFERS = (NET + "code_xyz._freqs", NET + "code_xyz._phases")
# Renderer bookkeeping (iteration counters) with no meaning for the model.
IGNORED_KEYS = ("renderer.renderer.iter_idx", "renderer.renderer.last_sched")
NUM_DECODER_BLOCKS = 10  # upconv(4,0), upconv(4,1), ..., upconv(0,1); then 4 output convs (scales 0..3)

# Official head (module path under renderer.net.) -> our head name.
OFFICIAL_HEAD_NAMES: dict[str, str] = {
    "mlp_coarse": SINGLE_VIEW_HEAD,  # BTS density MLP
    "heads.singleviewhead": SINGLE_VIEW_HEAD,  # KDBTS student
    "heads.multiviewhead3": MULTI_VIEW_HEAD,  # MVBTS teacher
}
# Sub-module renames inside a head: official ResnetFC(n_blocks=0) layers -> our MLP layers.
_MLP_LAYERS = {"lin_in": "hidden", "lin_out": "output"}
_HEAD_SUBMODULES = {"mlp_coarse": "mlp", "heads.singleviewhead": "mlp"}
_MULTI_VIEW_SUBMODULES = {"mlp": "view_mlp", "mlp2": "fusion_mlp"}

# (blocks in layer1..layer4, bottleneck) -> torchvision ResNet depth.
_RESNET_DEPTHS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}


class CheckpointError(RuntimeError):
    """A checkpoint does not fit the model (wrong architecture, missing/unexpected/mis-shaped keys)."""


@dataclass(frozen=True)
class OfficialArchitecture:
    """What an official checkpoint holds, read from its key and shape set."""

    resnet_layers: int
    official_heads: tuple[str, ...]  # official head paths, e.g. ("heads.multiviewhead3", "heads.singleviewhead")

    @property
    def kind(self) -> str:
        """ "BTS", "MVBTS" or "MVBTS + KDBTS student"."""
        if "mlp_coarse" in self.official_heads:
            return "BTS"
        return "MVBTS + KDBTS student" if "heads.singleviewhead" in self.official_heads else "MVBTS"

    def describe(self) -> str:
        return f"ResNet-{self.resnet_layers} {self.kind} (heads: {', '.join(self.official_heads)})"


def read_official_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The model state dict (official key names) of an official checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, Mapping) or "model" not in data:
        found = list(data)[:10] if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(f"{path} is not an official checkpoint: expected a dict with 'model', found {found}")
    return dict(data["model"])


def detect_architecture(official: Mapping[str, Tensor]) -> OfficialArchitecture:
    """Read the ResNet depth and the density heads from an official state dict's keys."""
    blocks = []
    for layer in range(1, 5):
        pattern = re.compile(re.escape(f"{BACKBONE}layer{layer}.") + r"(\d+)\.")
        indices = {int(m.group(1)) for key in official if (m := pattern.match(key))}
        blocks.append(max(indices) + 1 if indices else 0)
    bottleneck = any(key.startswith(BACKBONE) and ".conv3." in key for key in official)
    depth = _RESNET_DEPTHS.get((tuple(blocks), bottleneck))
    if depth is None:
        raise CheckpointError(f"unrecognised ResNet in checkpoint: blocks per layer {blocks}, bottleneck={bottleneck}")
    heads = tuple(head for head in OFFICIAL_HEAD_NAMES if any(key.startswith(f"{NET}{head}.") for key in official))
    if not heads:
        raise CheckpointError("no density head found in checkpoint (expected mlp_coarse or heads.*)")
    return OfficialArchitecture(resnet_layers=depth, official_heads=heads)


def official_to_our_key(key: str, head_names: Mapping[str, str] = OFFICIAL_HEAD_NAMES) -> str | None:
    """Our name (relative to the density field) for an official model key, or None if no rule covers it."""
    if key.startswith(BACKBONE):
        return "encoder.backbone." + key[len(BACKBONE) :]
    if key.startswith(DECODER):
        index, _, rest = key[len(DECODER) :].partition(".")
        j = int(index) if index.isdigit() else -1
        if 0 <= j < NUM_DECODER_BLOCKS and rest.startswith("conv.conv."):
            # Blocks come in (reduce, fuse) pairs from level 4 down to level 0.
            role = "reduce" if j % 2 == 0 else "fuse"
            return f"encoder.decoder.stages.{4 - j // 2}.{role}.conv.{rest[len('conv.conv.') :]}"
        if NUM_DECODER_BLOCKS <= j < NUM_DECODER_BLOCKS + 4 and rest.startswith("conv."):
            return f"encoder.decoder.output_convs.{j - NUM_DECODER_BLOCKS}.conv.{rest[len('conv.') :]}"
        return None
    for head, ours in head_names.items():
        prefix = f"{NET}{head}."
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix) :].split(".")
        if head in _HEAD_SUBMODULES and len(parts) == 2 and parts[0] in _MLP_LAYERS:
            return f"heads.{ours}.{_HEAD_SUBMODULES[head]}.{_MLP_LAYERS[parts[0]]}.{parts[1]}"
        if (
            head not in _HEAD_SUBMODULES
            and len(parts) == 3
            and parts[0] in _MULTI_VIEW_SUBMODULES
            and parts[1] in _MLP_LAYERS
        ):
            return f"heads.{ours}.{_MULTI_VIEW_SUBMODULES[parts[0]]}.{_MLP_LAYERS[parts[1]]}.{parts[2]}"
        return None
    return None


def _check_pe_buffers(official: Mapping[str, Tensor], num_freqs: int, freq_factor: float) -> None:
    """The official PE buffers are constants; they must equal ours (else the model would differ)."""
    expected = encoding_constants(num_freqs, freq_factor)
    for key, ours in zip(PE_BUFFERS, expected, strict=True):
        if key not in official:
            raise CheckpointError(f"checkpoint lacks the positional-encoding buffer {key}")
        theirs = official[key].float().flatten()
        if theirs.shape != ours.shape or not torch.equal(theirs, ours):
            raise CheckpointError(
                f"{key} = {theirs.tolist()} differs from this model's encoding "
                f"(num_freqs={num_freqs}, freq_factor={freq_factor}): {ours.tolist()}"
            )


def convert_official_state_dict(
    official: Mapping[str, Tensor],
    head_names: Mapping[str, str] = OFFICIAL_HEAD_NAMES,
    num_freqs: int = 6,
    freq_factor: float = 1.5,
) -> dict[str, Tensor]:
    """Official state dict -> ours (float tensors upcast to float32). Unknown keys raise, listed."""
    _check_pe_buffers(official, num_freqs, freq_factor)
    converted: dict[str, Tensor] = {}
    unknown = []
    for key, value in official.items():
        if key in PE_BUFFERS or key in IGNORED_KEYS:
            continue
        ours = official_to_our_key(key, head_names)
        if ours is None:
            unknown.append(key)
            continue
        if ours in converted:
            raise CheckpointError(f"two official keys map to {ours}; check head_names={dict(head_names)}")
        converted[ours] = value.float() if value.is_floating_point() else value
    if unknown:
        raise CheckpointError(_listing("checkpoint keys with no mapping to this code", unknown))
    return converted


def _listing(title: str, keys: Iterable[str], limit: int = 40) -> str:
    keys = sorted(keys)
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{title} ({len(keys)}):\n  {shown}{more}"


def load_state_dict_exact(
    module: nn.Module, state_dict: Mapping[str, Tensor], allow_missing_prefixes: tuple[str, ...] = ()
) -> None:
    """Load ``state_dict``; any missing, unexpected or mis-shaped key raises :class:`CheckpointError`.

    ``allow_missing_prefixes`` names parts deliberately left at their initialisation (e.g. a new KDBTS
    student ``("heads.single_view.",)`` when starting from an MVBTS checkpoint); they are logged.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    allowed = [k for k in missing if k.startswith(allow_missing_prefixes)] if allow_missing_prefixes else []
    missing = [k for k in missing if k not in allowed]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(_listing("missing keys (in the model, not in the checkpoint)", missing))
    if unexpected:
        problems.append(_listing("unexpected keys (in the checkpoint, not in the model)", unexpected))
    if shapes:
        problems.append(_listing("shape mismatches", shapes))
    if problems:
        raise CheckpointError("checkpoint does not match the model:\n" + "\n".join(problems))
    if allowed:
        log.warning("%d parameters keep their initial values: %s", len(allowed), sorted(allowed))
    module.load_state_dict({**{k: expected[k] for k in allowed}, **state_dict}, strict=True)


def describe_field(field: DensityField) -> str:
    """The model's architecture in the terms of :meth:`OfficialArchitecture.describe`."""
    heads = ", ".join(field.heads)
    return f"ResNet-{field.encoder.resnet_layers} with heads: {heads}"


def load_official_checkpoint(
    field: DensityField,
    path: str | Path,
    head_names: Mapping[str, str] = OFFICIAL_HEAD_NAMES,
    allow_missing_prefixes: tuple[str, ...] = (),
) -> OfficialArchitecture:
    """Load an official checkpoint file into ``field``; returns what the checkpoint held (see
    :func:`load_official_state`)."""
    return load_official_state(field, read_official_checkpoint(path), str(path), head_names, allow_missing_prefixes)


def load_official_state(
    field: DensityField,
    official: Mapping[str, Tensor],
    source: str,
    head_names: Mapping[str, str] = OFFICIAL_HEAD_NAMES,
    allow_missing_prefixes: tuple[str, ...] = (),
) -> OfficialArchitecture:
    """Load an official model state dict (read from ``source``) into ``field``; returns what it held.

    Raises :class:`CheckpointError` naming both architectures when they differ (ResNet depth, heads), and
    listing keys when the state dicts differ in any other way.
    """
    arch = detect_architecture(official)
    ckpt_heads = {head_names[h] for h in arch.official_heads if h in head_names}
    allowed_heads = {name for name in field.heads if f"heads.{name}." in allow_missing_prefixes}
    if arch.resnet_layers != field.encoder.resnet_layers or ckpt_heads | allowed_heads != set(field.heads):
        raise CheckpointError(
            f"{source} holds a {arch.describe()} but the model is configured as {describe_field(field)} "
            f"(official heads map to ours as {dict(head_names)}); set the model config to match the checkpoint"
        )
    converted = convert_official_state_dict(official, head_names, field.num_freqs, field.freq_factor)
    load_state_dict_exact(field, converted, allow_missing_prefixes)
    log.info("Loaded official %s checkpoint %s", arch.describe(), source)
    return arch
