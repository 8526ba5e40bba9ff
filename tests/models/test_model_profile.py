"""Parameter/MAC counting and the per-layer summary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.models import create_model
from cnnbench.models.profile import count_macs, count_params, format_layer_summary, layer_summary


def test_count_macs_of_a_known_network():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    expected = 8 * 4 * 4 * 3 * 3 * 3 + 8 * 4 * 4 * 5  # conv (per output value: 3x3x3) + linear
    assert count_macs(model, (3, 4, 4)) == expected
    assert count_macs(model, (2, 3, 4, 4)) == 2 * expected
    assert count_params(model) == 8 * 27 + 8 + 128 * 5 + 5


def test_count_macs_matches_torchvision_published_figures():
    # torchvision's "GFLOPS" for resnet18 and mobilenet_v2 are MACs: 1.81 and 0.30
    with torch.device("meta"):
        resnet = create_model("resnet18", num_classes=1000, in_chans=3, input_size=224)
        mobilenet = create_model("mobilenet_v2", num_classes=1000, in_chans=3, input_size=224)
    assert count_macs(resnet, (3, 224, 224)) / 1e9 == pytest.approx(1.814, abs=0.001)
    assert count_macs(mobilenet, (3, 224, 224)) / 1e9 == pytest.approx(0.301, abs=0.001)


def test_counting_leaves_the_model_untouched():
    model = create_model("resnet18", num_classes=10, in_chans=3, input_size=32).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (3, 32, 32))
    layer_summary(model, (3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_layer_summary_rows():
    model = create_model("lenet5", num_classes=10, in_chans=1, input_size=28)
    rows = layer_summary(model, (1, 28, 28))
    assert [r.name for r in rows][:3] == ["features.c1", "features.act1", "features.s2"]
    assert rows[0].type == "Conv2d" and rows[0].output_shape == (-1, 6, 28, 28)  # padded to 32 first
    assert rows[-1].output_shape == (-1, 10)
    assert sum(r.params for r in rows) == count_params(model) == 61_706
    text = format_layer_summary(rows, model, (1, 28, 28))
    assert "Total params: 61,706" in text and "FLOPs = 2 x MACs" in text


class _BatchNormKernels(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the BatchNorm kernels PyTorch runs (``ran``) and its random fills (``fills``);
    on the meta device both are Python reference code."""

    def __init__(self):
        super().__init__()
        self.ran = self.fills = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ran += "batch_norm" in func.__name__
        self.fills += func.__name__.split(".")[0] in ("normal_", "uniform_")
        return func(*args, **(kwargs or {}))


def test_shape_passes_on_the_meta_device_run_no_batchnorm_kernel(monkeypatch):
    """Building on the meta device (its input-size check), MAC counts and layer summaries need
    shapes only: BatchNorm, 90% of a meta pass's CPU, is skipped; the counts and rows stay those
    of the pass that runs it, and real tensors still run it."""
    import contextlib

    from cnnbench.models import profile
    from cnnbench.models.common import shapes_only

    with _BatchNormKernels() as kernels, torch.device("meta"):
        model = create_model("googlenet", num_classes=10, in_chans=3, input_size=32)
    assert kernels.ran == kernels.fills == 0  # nothing to fill on the meta device
    with _BatchNormKernels() as kernels:
        create_model("googlenet", num_classes=10, in_chans=3, input_size=32)
    assert kernels.ran > 0 and kernels.fills > 0  # a real build: initialised and checked
    with _BatchNormKernels() as kernels:
        macs, rows = count_macs(model, (3, 32, 32)), layer_summary(model, (3, 32, 32))
    assert kernels.ran == 0
    monkeypatch.setattr(profile, "shapes_only", contextlib.nullcontext)
    with _BatchNormKernels() as kernels:
        assert (macs, rows) == (count_macs(model, (3, 32, 32)), layer_summary(model, (3, 32, 32)))
    assert kernels.ran == 2 * sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    bn = nn.BatchNorm2d(4)
    with _BatchNormKernels() as kernels, shapes_only():
        assert bn(torch.ones(2, 4, 3, 3)).shape == (2, 4, 3, 3)  # a real tensor: run
    assert kernels.ran == 1


def test_a_meta_batchnorm_of_the_wrong_width_still_fails():
    from cnnbench.models.common import shapes_only

    with torch.device("meta"):
        bn, x = nn.BatchNorm2d(4), torch.empty(2, 3, 5, 5)
        with pytest.raises(RuntimeError), torch.device("cpu"):  # PyTorch's own error, without the mode
            nn.BatchNorm2d(4).to("meta").eval()(x)
        with shapes_only(), pytest.raises(RuntimeError, match="running_mean should contain 3 elements not 4"):
            bn(x)
        with shapes_only(), pytest.raises(ValueError, match="more than 1 value per channel"):
            nn.BatchNorm2d(3)(torch.empty(1, 3, 1, 1))  # training: one value per channel
        with shapes_only():
            assert nn.BatchNorm2d(3).eval()(torch.empty(1, 3, 1, 1)).shape == (1, 3, 1, 1)
            assert nn.BatchNorm2d(3, affine=False)(x).shape == (2, 3, 5, 5)
            assert nn.BatchNorm1d(3)(torch.empty(2, 3)).shape == (2, 3)
