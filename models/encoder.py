"""Monodepth2-style image encoder-decoder producing a full-resolution feature map (REFERENCE 2.1).

A torchvision ResNet gives a 5-level pyramid (strides 2..32); a U-Net-like decoder upsamples back with
skip connections. Only the scale-0 output (full input resolution, ``d_out`` channels) is computed; the
output convolutions of scales 1-3 exist as parameters so that official checkpoints load strictly.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Decoder widths before raising each to at least d_out (official config value).
DEFAULT_NUM_CH_DEC = (32, 32, 64, 128, 256)
# Per-channel normalisation applied to colours in [0, 1] (Monodepth2's constants).
IMAGE_MEAN = 0.45
IMAGE_STD = 0.225
NUM_OUTPUT_SCALES = 4

_RESNETS = {
    18: ("resnet18", "ResNet18_Weights"),
    34: ("resnet34", "ResNet34_Weights"),
    50: ("resnet50", "ResNet50_Weights"),
    101: ("resnet101", "ResNet101_Weights"),
    152: ("resnet152", "ResNet152_Weights"),
}


def resolve_channels_last(choice: bool | str) -> bool:
    """``channels_last`` of :class:`ImageEncoder`: True / False, or "auto" = NHWC where it measured faster: with CUDA
    (bf16 tensor cores want it) and on CPUs with AVX-512 (oneDNN; the BTS / MVBTS training steps 1.085x / 1.12x
    faster at the official size). Plain NCHW elsewhere (AVX2-only CPUs measured slower)."""
    if isinstance(choice, bool):
        return choice
    if choice != "auto":
        raise ValueError(f"channels_last must be true, false or auto, not {choice!r}")
    return torch.cuda.is_available() or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def canonical_channels_last(grad: Tensor) -> Tensor:
    """A channels-last gradient with the strides convolutions recognise. The reshapes it passed through (to the
    scene's (B, Ve, ...) and back) may leave a size-1 batch dimension with any stride: the memory is NHWC, but
    oneDNN's layout check then reads NCHW and copies the whole map. Same memory, strides restated."""
    if grad.dim() != 4 or not grad.is_contiguous(memory_format=torch.channels_last):
        return grad
    _, C, H, W = grad.shape
    return grad.as_strided(grad.shape, (H * W * C, 1, W * C, C))


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were requested but could not be obtained (e.g. offline)."""


def pyramid_channels(resnet_layers: int) -> tuple[int, ...]:
    """Channels of the 5 encoder levels (conv1, layer1..layer4) of a torchvision ResNet."""
    expansion = 1 if resnet_layers in (18, 34) else 4
    return (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)


def _download_imagenet_state_dict(weights) -> dict[str, Tensor]:
    """torchvision's ImageNet weights from the torch hub cache, downloading them if absent."""
    return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)


def build_resnet(resnet_layers: int, pretrained: bool) -> torchvision.models.ResNet:
    """A torchvision ResNet (including its unused ``fc``: official checkpoints contain it)."""
    if resnet_layers not in _RESNETS:
        raise ValueError(f"resnet_layers must be one of {sorted(_RESNETS)}, got {resnet_layers}")
    fn_name, weights_name = _RESNETS[resnet_layers]
    resnet = getattr(torchvision.models, fn_name)(weights=None)
    if not pretrained:
        return resnet
    # IMAGENET1K_V1 is what torchvision's legacy ``pretrained=True`` (used officially) resolves to.
    weights = getattr(torchvision.models, weights_name).IMAGENET1K_V1
    try:
        state_dict = _download_imagenet_state_dict(weights)
    except Exception as err:  # any download or cache failure gets the same explanation
        cache_file = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        raise PretrainedWeightsError(
            f"Could not obtain ImageNet weights for ResNet-{resnet_layers} ({type(err).__name__}: {err}). "
            f"Either set the encoder option pretrained=false (random init; fine when loading a trained "
            f"checkpoint afterwards), or download {weights.url} on a machine with internet access and "
            f"place it at {cache_file} (the torch hub cache; TORCH_HOME changes its location)."
        ) from err
    resnet.load_state_dict(state_dict)
    log.info("Loaded ImageNet weights for ResNet-%d", resnet_layers)
    return resnet


class ConvELU(nn.Module):
    """3x3 reflection-padded convolution, optionally followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int, activation: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (B, Cout, H, W)."""
        x = self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return F.elu(x) if self.activation else x


class DecoderStage(nn.Module):
    """One decoder level: reduce channels, upsample x2, concatenate the skip, fuse."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.reduce = ConvELU(in_channels, out_channels)
        self.fuse = ConvELU(out_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        """(B, Cin, h, w) [+ skip (B, Cs, 2h, 2w)] -> (B, Cout, 2h, 2w)."""
        x = F.interpolate(self.reduce(x), scale_factor=2.0, mode="nearest")
        if skip is not None:
            # Odd-sized inputs make the upsampled map one pixel larger than the skip; crop it.
            x = torch.cat([x[..., : skip.shape[-2], : skip.shape[-1]], skip], dim=1)
        return self.fuse(x)


class Decoder(nn.Module):
    """Monodepth2 decoder; ``stages[i]`` handles pyramid level i (run from 4 down to 0)."""

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...], d_out: int) -> None:
        super().__init__()
        levels = len(encoder_channels)
        self.stages = nn.ModuleList(
            DecoderStage(
                in_channels=encoder_channels[-1] if i == levels - 1 else decoder_channels[i + 1],
                out_channels=decoder_channels[i],
                skip_channels=encoder_channels[i - 1] if i > 0 else 0,
            )
            for i in range(levels)
        )
        # Output convs of scales 0..3; only scale 0 is used (official ``_scale = 0``), the others are kept
        # so that official checkpoints load with strict key matching.
        self.output_convs = nn.ModuleList(
            ConvELU(decoder_channels[s], d_out, activation=False) for s in range(NUM_OUTPUT_SCALES)
        )

    def forward(self, pyramid: list[Tensor]) -> Tensor:
        """Encoder pyramid (5 maps, strides 2..32) -> scale-0 features (B, d_out, 2 H0, 2 W0)."""
        x = pyramid[-1]
        for i in reversed(range(len(self.stages))):
            x = self.stages[i](x, pyramid[i - 1] if i > 0 else None)
        return self.output_convs[0](x)


class ImageEncoder(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) -> feature maps (B, d_out, H, W)."""

    def __init__(
        self,
        resnet_layers: int = 50,
        d_out: int = 64,
        num_ch_dec: tuple[int, ...] = DEFAULT_NUM_CH_DEC,
        pretrained: bool = True,
        freeze: bool = False,
        channels_last: bool | str = "auto",
    ) -> None:
        super().__init__()
        self.resnet_layers = resnet_layers
        self.d_out = d_out
        self.channels_last = resolve_channels_last(channels_last)
        self.backbone = build_resnet(resnet_layers, pretrained)
        decoder_channels = tuple(max(c, d_out) for c in num_ch_dec)
        self.decoder = Decoder(pyramid_channels(resnet_layers), decoder_channels, d_out)
        # Kept only so that official checkpoints load strictly; never run. Without gradients they
        # stay out of the optimizer's way and DDP does not wait for them.
        self.backbone.fc.requires_grad_(False)
        self.decoder.output_convs[1:].requires_grad_(False)
        if self.channels_last:
            # NHWC convolutions: what cuDNN's bf16 tensor-core kernels want, and faster in oneDNN on CPUs with
            # AVX-512 (README, "Performance"). Outputs are identical up to float rounding.
            self.to(memory_format=torch.channels_last)
        if freeze:
            # As officially: no gradients; BatchNorm statistics still follow the module's train/eval mode.
            self.requires_grad_(False)

    def pyramid(self, x: Tensor) -> list[Tensor]:
        """Normalised images (B, 3, H, W) -> 5 maps at strides 2, 4, 8, 16, 32."""
        net = self.backbone
        level0 = net.relu(net.bn1(net.conv1(x)))
        level1 = net.layer1(net.maxpool(level0))
        level2 = net.layer2(level1)
        level3 = net.layer3(level2)
        level4 = net.layer4(level3)
        return [level0, level1, level2, level3, level4]

    def forward(self, images: Tensor, flip: bool = False) -> Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> features (B, d_out, H, W).

        ``flip=True`` is the training augmentation: encode the mirrored images and mirror the features
        back, so features stay aligned with the unflipped images. The caller draws it (p = 0.5).
        """
        x = ((images * 0.5 + 0.5) - IMAGE_MEAN) / IMAGE_STD
        if flip:
            x = torch.flip(x, dims=[-1])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.decoder(self.pyramid(x))
        nhwc_training = self.channels_last and features.device.type == "cpu" and features.requires_grad
        if self.channels_last and not nhwc_training:
            features = features.contiguous()  # the feature sampling (grid_sample) reads plain NCHW
        features = torch.flip(features, dims=[-1]) if flip else features
        if nhwc_training:
            # In CPU training they stay NHWC: the lookup's CPU backward (models.density_field._SampleFeatures)
            # returns its gradient in that layout, so the trunk's backward can take it without a transposing copy.
            features.register_hook(canonical_channels_last)
        return features


def draw_flip(p: float = 0.5, generator: torch.Generator | None = None) -> bool:
    """Draw the flip-augmentation decision for one batch (True with probability ``p``)."""
    return bool(torch.rand((), generator=generator) < p)
