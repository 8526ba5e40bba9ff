"""The lab reports' networks (``../shared/seeds/*.txt``), registered as named variants with the
study that reproduces each report: parameter counts, and the layout details that the counts
alone would not catch (report 000's one Tanh and MobileNetV2 shortcuts, report 001's shared
shortcut weights, report 004's BatchNorm momentum)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models.mobilenet import V2_SETTING
from cnnbench.models.profile import count_params

R000 = "../shared/seeds/000_5fb1d57efed289c0.txt"  # study mnist-classics
R001 = "../shared/seeds/001_ff525e450deaf5fe.txt"  # study mnist-five
R003 = "../shared/seeds/003_12b1c3faa3378c9a.txt"  # study cifar10-tricks
R004 = "../shared/seeds/004_2d0eec9dd5bad1f5.txt"  # study alexnet-ablation


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


def _shape(in_chans, size, **kw):
    return dict(num_classes=10, in_chans=in_chans, input_size=size, **kw)


def test_alexnet_small_batchnorm_momentum_is_the_reports():
    """R004:94 prints ``BatchNorm2d(96, eps=1e-05, momentum=0.9, ...)``."""
    model = _meta("alexnet_small", **_shape(3, 32))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == 7 and all(m.momentum == 0.9 for m in norms)
    pytorch = _meta("alexnet_small", **_shape(3, 32), bn_momentum=0.1)
    assert all(m.momentum == 0.1 for m in pytorch.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
