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
