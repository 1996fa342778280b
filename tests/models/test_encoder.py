"""Image encoder: shapes, flip augmentation, freezing, and the offline ImageNet-weights error."""

import urllib.error

import pytest
import torch

from models.encoder import (
    ImageEncoder,
    PretrainedWeightsError,
    canonical_channels_last,
    draw_flip,
    resolve_channels_last,
)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return ImageEncoder(resnet_layers=18, pretrained=False, channels_last=False).eval()


def test_full_resolution_output(encoder):
    images = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        features = encoder(images)
    assert features.shape == (2, 64, 64, 96)


def test_odd_sizes_are_cropped_to_the_skip(encoder):
    with torch.no_grad():
        features = encoder(torch.zeros(1, 3, 70, 100))
    assert features.shape == (1, 64, 70, 100)


def test_flip_encodes_the_mirror_image_and_mirrors_back(encoder):
    images = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        flipped = encoder(images, flip=True)
        reference = torch.flip(encoder(torch.flip(images, dims=[-1])), dims=[-1])
    torch.testing.assert_close(flipped, reference)


def test_flip_of_a_symmetric_image_mirrors_the_features(encoder):
    half = torch.rand(1, 3, 64, 48) * 2 - 1
    symmetric = torch.cat([half, torch.flip(half, dims=[-1])], dim=-1)
    with torch.no_grad():
        flipped = encoder(symmetric, flip=True)
        plain = encoder(symmetric, flip=False)
    # The network itself is not mirror-symmetric, so flip=True gives the mirrored feature map of the same input.
    torch.testing.assert_close(flipped, torch.flip(plain, dims=[-1]))


def test_draw_flip_is_reproducible_with_a_generator():
    draws = [draw_flip(0.5, torch.Generator().manual_seed(s)) for s in range(64)]
    assert any(draws) and not all(draws)
    assert draws == [draw_flip(0.5, torch.Generator().manual_seed(s)) for s in range(64)]
    assert not draw_flip(0.0) and draw_flip(1.0)


def test_freeze_disables_gradients():
    frozen = ImageEncoder(resnet_layers=18, pretrained=False, freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_unused_output_scales_exist_for_strict_loading(encoder):
    keys = encoder.state_dict().keys()
    assert {f"decoder.output_convs.{s}.conv.weight" for s in range(4)} <= set(keys)
    assert "backbone.fc.weight" in keys


def test_pretrained_offline_raises_clear_error(monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(PretrainedWeightsError) as info:
        ImageEncoder(resnet_layers=18, pretrained=True)
    message = str(info.value)
    assert "pretrained=false" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "checkpoints/resnet18-f37072fd.pth" in message


def test_unknown_depth_is_rejected():
    with pytest.raises(ValueError, match="resnet_layers"):
        ImageEncoder(resnet_layers=20, pretrained=False)


def test_channels_last_trunk_gives_the_same_features(encoder):
    nhwc = ImageEncoder(resnet_layers=18, pretrained=False, channels_last=True).eval()
    nhwc.load_state_dict(encoder.state_dict())
    assert nhwc.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        expected, features = encoder(images, flip=True), nhwc(images, flip=True)
    assert features.is_contiguous()  # plain NCHW for the feature sampling
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


def test_in_cpu_training_the_nhwc_trunk_hands_its_layout_to_the_lookup_and_gets_the_same_gradients(encoder):
    """With a gradient on a CPU the features stay NHWC (the lookup's backward answers in that layout, so the trunk's
    backward needs no transposing copy); features and the trunk's gradients equal the NCHW trunk's."""
    from models.density_field import sample_features

    nchw = ImageEncoder(resnet_layers=18, pretrained=False, channels_last=False).eval()
    nhwc = ImageEncoder(resnet_layers=18, pretrained=False, channels_last=True).eval()  # eval: fixed BN statistics
    nchw.load_state_dict(encoder.state_dict())
    nhwc.load_state_dict(encoder.state_dict())
    images = torch.rand(2, 3, 64, 96) * 2 - 1
    uv = torch.rand(2, 500, 2) * 2.2 - 1.1  # some points off the image: border padding
    grads = []
    for model in (nchw, nhwc):
        features = model(images, flip=True)
        sample_features(features.unsqueeze(1), uv.unsqueeze(1)).square().sum().backward()
        grads.append(model.backbone.conv1.weight.grad)
    assert features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous()
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)


def test_a_channels_last_gradient_gets_the_strides_convolutions_recognise():
    nhwc = torch.randn(1, 4, 3, 5).contiguous(memory_format=torch.channels_last)
    # What a reshape round trip through (B, Ve, C, H, W) can leave: the size-1 batch dimension with stride C.
    odd = nhwc.as_strided(nhwc.shape, (4, 1, 20, 4))
    fixed = canonical_channels_last(odd)
    assert fixed.stride() == (60, 1, 20, 4) and fixed.data_ptr() == nhwc.data_ptr()  # no copy
    assert torch.equal(fixed, nhwc)
    nchw = torch.randn(2, 4, 3, 5)
    assert canonical_channels_last(nchw) is nchw  # not NHWC: left alone


def test_auto_layout_is_nhwc_with_cuda_or_avx512_only(monkeypatch):
    assert resolve_channels_last(True) is True and resolve_channels_last(False) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for capability, expected in (("AVX2", False), ("DEFAULT", False), ("AVX512", True)):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert resolve_channels_last("auto") is expected
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_channels_last("auto") is True  # with AVX2 too: cuDNN's bf16 kernels want NHWC
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_channels_last("yes")
