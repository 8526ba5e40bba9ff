"""fastnet: a compact network for fast CIFAR-10 training, after airbench."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnbench.errors import UserError
from cnnbench.models.common import make_activation
from cnnbench.models.registry import register_model

__all__ = ["FastNet"]


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
    # Identity ("dirac") start for the first cin filters: each block starts close to passing
    # its input through, which airbench found saves epochs.
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


class ConvGroup(nn.Module):
    """conv 3x3 -> max-pool 2 -> BatchNorm -> act -> conv 3x3 -> BatchNorm -> act."""

    def __init__(self, cin: int, cout: int, activation: str, bn_momentum: float, bn_eps: float) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout)
        self.pool = nn.MaxPool2d(2)  # pooling before the norm: BatchNorm sees 4x fewer values
        self.norm1 = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum)
        self.act1 = make_activation(activation)
        self.conv2 = _conv3x3(cout, cout)
        self.norm2 = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum)
        self.act2 = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    """A compact convolutional network for training CIFAR-10 to ~94% in minutes, following the
    network of K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498
    (2024; "airbench94"), which descends from D. Page, "How to train your ResNet" (Myrtle.ai
    blog series, 2018) via tysam-code's hlb-CIFAR10.

    Layout (map sizes for a 32 px input): ``whiten``, a 2x2 convolution without padding and
    with bias [31], meant for patch-whitening initialisation from training images
    (``cnnbench.training.whitening`` finds it as ``model.whiten``), its width ``2 * in_chans * 4`` so
    that it can hold every whitening filter and its negation; the activation; three
    ``ConvGroup`` blocks of conv-pool-BN-act-conv-BN-act with ``widths`` (64, 256, 256)
    channels [15, 7, 3]; a global max pool; a linear head without bias whose output is
    multiplied by ``logit_scale`` (1/9), which keeps the initial logits small as the head sees
    un-normalised features. GELU activations; BatchNorm eps 1e-12 and momentum 0.4 (PyTorch's
    convention: airbench's "0.6" is the weight kept on the running statistics). Every 3x3
    convolution starts with its first ``cin`` filters set to the identity (airbench's dirac
    initialisation). 1,972,792 parameters and 118M MACs at 3x32x32 with 10 classes.

    ``width_mult`` scales ``widths``; ``activation`` is any of cnnbench's activations;
    ``drop_rate`` > 0 adds dropout before the head (airbench has none).

    Deviations from airbench94:

    * The final pool is global (adaptive max pool to 1x1) instead of a fixed 3x3 max pool: the
      same on 32 px inputs (3x3 maps), and it also works on 28x28 (MNIST: 3x3 maps as well).
    * Every parameter is trainable by default. airbench freezes the whitening weights and the
      BatchNorm scales (and trains the whitening bias for a few epochs only); freezing is a
      training decision left to the recipe (``bn_scale=False`` builds the network with the
      BatchNorm scales fixed at 1, as airbench).
    * Plain PyTorch default initialisation for the whitening convolution; the whitening itself
      is done by the training code from the training images.
    * Float32 throughout (airbench keeps all but BatchNorm in float16 on the GPU).

    There is no stem switch (``model.stem`` is ``None``); 28 and 32 px inputs both work, down
    to 9x9.
    """

    cam_layer = "blocks"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", widths: tuple[int, int, int] = (64, 256, 256),
                 width_mult: float = 1.0, activation: str = "gelu", logit_scale: float = 1 / 9,
                 bn_momentum: float = 0.4, bn_scale: bool = True) -> None:
        super().__init__()
        if len(widths) < 1 or width_mult <= 0:
            raise UserError(f"fastnet needs at least one width and width_mult > 0, got {widths}, {width_mult}")
        self.stem = None
        self.logit_scale = logit_scale
        kernel = 2
        self.whiten = nn.Conv2d(in_chans, 2 * in_chans * kernel * kernel, kernel_size=kernel, padding=0, bias=True)
        self.act = make_activation(activation)
        channels = self.whiten.out_channels
        blocks = []
        for width in widths:
            width = max(1, round(width * width_mult))
            blocks.append(ConvGroup(channels, width, activation, bn_momentum, bn_eps=1e-12))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(channels, num_classes, bias=False)
        if not bn_scale:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.act(self.whiten(x)))
        x = self.dropout(torch.flatten(self.pool(x), 1))
        return self.head(x) * self.logit_scale


fastnet = register_model("fastnet", FastNet, doc="Compact fast CIFAR network after airbench94 "
                                                 "(Jordan 2024), widths (64, 256, 256)")
