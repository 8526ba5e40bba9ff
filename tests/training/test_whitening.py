"""Patch-whitening initialisation: whitened first-layer outputs, channel layouts, refusals; in a
run, the frozen filters and the bias trained for ``whiten_bias_epochs``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import checkpoint as ckpt
from cnnbench.training.whitening import find_whitening_conv, init_patch_whitening
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder, train_tiny  # noqa: F401


def _correlated_images(n, channels, size, seed=0):
    """Smooth, channel-correlated random images: neighbouring pixels and channels correlate."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, channels, size + 2, size + 2, generator=gen)
    smooth = F.avg_pool2d(noise, 3, stride=1)                     # spatial correlation
    mix = torch.eye(channels) + 0.8 * torch.ones(channels, channels)  # channel correlation
    return 3.0 * torch.einsum("dc,nchw->ndhw", mix, smooth) + 0.5


def _output_covariance(conv, images):
    out = conv(images)                                            # (N, out, H', W')
    feats = out.transpose(0, 1).reshape(out.shape[1], -1)
    return torch.cov(feats.double())


@pytest.mark.parametrize("channels,kernel", [(1, 2), (3, 2), (3, 3)])
def test_outputs_have_identity_covariance(channels, kernel):
    d = channels * kernel * kernel
    images = _correlated_images(200, channels, 12)
    conv = nn.Conv2d(channels, 2 * d, kernel, bias=True)
    before = _output_covariance(conv, images)[:d, :d]
    assert not torch.allclose(before, torch.eye(d, dtype=torch.float64), atol=0.1)

    eigenvalues = init_patch_whitening(conv, images, eps=0.0)
    with torch.no_grad():
        cov = _output_covariance(conv, images)
    assert torch.allclose(cov[:d, :d], torch.eye(d, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(conv.weight[d:], -conv.weight[:d])      # negated copies
    assert torch.all(conv.bias == 0)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])         # decreasing

    init_patch_whitening(conv, images)                            # default eps: still close
    with torch.no_grad():
        assert torch.allclose(_output_covariance(conv, images)[:d, :d],
                              torch.eye(d, dtype=torch.float64), atol=0.05)


def test_fewer_filters_than_patch_dims_take_top_components():
    images = _correlated_images(100, 3, 10)
    full = nn.Conv2d(3, 12, 2, bias=False)
    small = nn.Conv2d(3, 5, 2, bias=False)
    init_patch_whitening(full, images)
    init_patch_whitening(small, images)
    assert torch.allclose(small.weight.abs(), full.weight[:5].abs(), atol=1e-5)  # up to sign


def test_extra_filters_keep_their_init_and_stride_padding_work():
    images = _correlated_images(100, 1, 10)
    conv = nn.Conv2d(1, 10, 2, stride=2, padding=1)                # d = 4, 2d = 8 < 10
    kept = conv.weight[8:].detach().clone()
    init_patch_whitening(conv, images)
    assert torch.equal(conv.weight[8:], kept)
    assert torch.allclose(conv.weight[4:8], -conv.weight[:4])


def test_uses_at_most_max_images():
    images = _correlated_images(50, 3, 8)
    a, b = nn.Conv2d(3, 12, 2), nn.Conv2d(3, 12, 2)
    init_patch_whitening(a, images, max_images=10)
    init_patch_whitening(b, images[torch.linspace(0, 49, 10).long()])
    assert torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("conv,images", [
    (nn.Conv2d(4, 8, 2, groups=2), torch.randn(4, 4, 8, 8)),
    (nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), torch.randn(4, 3, 8, 8)),
    (nn.Conv2d(3, 8, 2), torch.randn(4, 1, 8, 8)),                    # channel mismatch
    (nn.Conv2d(3, 8, 2), torch.zeros(4, 3, 8, 8, dtype=torch.uint8)),  # not normalised
    (nn.Conv2d(3, 8, 5), torch.randn(4, 3, 4, 4)),                    # kernel > image
])
def test_refuses_unsupported(conv, images):
    with pytest.raises(UserError):
        init_patch_whitening(conv, images)


def test_find_whitening_conv():
    class WithWhiten(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.whiten = nn.Conv2d(3, 24, 2)

    assert isinstance(find_whitening_conv(WithWhiten()), nn.Conv2d)
    assert find_whitening_conv(WithWhiten()).out_channels == 24
    seq = nn.Sequential(nn.Identity(), nn.Conv2d(1, 6, 5), nn.Conv2d(6, 6, 3))
    assert find_whitening_conv(seq) is seq[1]
    with pytest.raises(UserError):
        find_whitening_conv(nn.Sequential(nn.Linear(2, 2)))


def _whitened_first_conv(tiny_folder, **overrides):
    """The whitening filters a run with ``overrides`` starts from (computed here, not read
    from the run: the whitening depends only on the training images)."""
    from cnnbench.training import build_training
    from cnnbench.training.whitening import find_whitening_conv

    training = build_training(resolve_config(quick_options(tiny_folder, whiten_init=True, **overrides)))
    training.whiten()
    return find_whitening_conv(training.model)


def test_whiten_bias_epochs_zero_keeps_the_whitening_layer_frozen(tiny_folder):
    # lenet5's first conv (6 filters of 1x5x5) is fully set by the whitening: top-6 eigenvectors.
    summary, out = train_tiny(tiny_folder, epochs=2, whiten_init=True, whiten_bias_epochs=0)
    assert summary["status"] == "finished"
    weights = ckpt.load_checkpoint(out / "last.ckpt")["model"]
    start = _whitened_first_conv(tiny_folder)
    torch.testing.assert_close(weights["features.c1.weight"], start.weight.detach(), rtol=0, atol=0)
    assert torch.count_nonzero(weights["features.c1.bias"]) == 0  # zeroed by the whitening, frozen


def test_whiten_bias_epochs_trains_only_the_bias(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=2, whiten_init=True, whiten_bias_epochs=1)
    weights = ckpt.load_checkpoint(out / "last.ckpt")["model"]
    start = _whitened_first_conv(tiny_folder)
    torch.testing.assert_close(weights["features.c1.weight"], start.weight.detach(), rtol=0, atol=0)
    assert torch.count_nonzero(weights["features.c1.bias"]) > 0  # trained in epoch 1


def test_whitening_bias_stays_frozen_under_a_backbone_freeze(tiny_folder):
    _, out = train_tiny(tiny_folder, epochs=2, whiten_init=True, whiten_bias_epochs=2, freeze="backbone")
    weights = ckpt.load_checkpoint(out / "last.ckpt")["model"]
    assert torch.count_nonzero(weights["features.c1.bias"]) == 0  # the freeze wins
