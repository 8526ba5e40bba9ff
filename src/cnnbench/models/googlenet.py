"""GoogLeNet (Inception v1): torchvision's variant and the paper's."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnbench.errors import UserError
from cnnbench.models.common import resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["GoogLeNet", "INCEPTION_TABLE"]

# Szegedy et al. 2015, Table 1: per Inception module (name, #1x1, #3x3 reduce, #3x3,
# #5x5 reduce, #5x5, pool proj); "pool" is a 3x3/2 max pool (torchvision: 2x2/2 before 5a).
INCEPTION_TABLE: tuple = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    "pool",
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    "pool",
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)
_AUX_TAPS = {"4a": "aux1", "4d": "aux2"}  # the auxiliary classifiers read these modules' outputs


class ConvBlock(nn.Module):
    """Convolution and ReLU, with BatchNorm in between when ``bn`` (then the convolution has no
    bias; eps=1e-3 as torchvision's ``BasicConv2d``, whose keys ``conv``/``bn`` it keeps)."""

    def __init__(self, cin: int, cout: int, bn: bool, **conv_kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=not bn, **conv_kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> kxk (k = 5 in the paper,
    3 in torchvision); 3x3/1 max pool -> 1x1 (Szegedy et al. 2015, Fig. 2b)."""

    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, bn: bool, kernel_5x5: int) -> None:
        super().__init__()
        self.branch1 = ConvBlock(cin, ch1x1, bn, kernel_size=1)
        self.branch2 = nn.Sequential(ConvBlock(cin, ch3x3red, bn, kernel_size=1),
                                     ConvBlock(ch3x3red, ch3x3, bn, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(ConvBlock(cin, ch5x5red, bn, kernel_size=1),
                                     ConvBlock(ch5x5red, ch5x5, bn, kernel_size=kernel_5x5,
                                               padding=kernel_5x5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     ConvBlock(cin, pool_proj, bn, kernel_size=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: pool to 4x4, 1x1 conv to 128, FC-1024, dropout, FC-classes."""

    def __init__(self, cin: int, num_classes: int, bn: bool, drop_rate: float) -> None:
        super().__init__()
        self.conv = ConvBlock(cin, 128, bn, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        # adaptive rather than the paper's 5x5/3 pool: the same 4x4 grid for every input size
        x = self.conv(F.adaptive_avg_pool2d(x, 4))
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1)), inplace=True))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """GoogLeNet (Inception v1): C. Szegedy et al., "Going deeper with convolutions", CVPR 2015
    (Table 1; ``INCEPTION_TABLE``).

    Two variants share this class:

    * ``googlenet``: torchvision's, with BatchNorm after every convolution (from Inception v2;
      Ioffe & Szegedy 2015), convolutions without bias, no local response normalisation, and a
      3x3 convolution in the "5x5" branch (a known slip in the reference port that the
      pretrained weights depend on; pytorch/vision#906). At 3x224x224 and 1000
      classes the parameters and ``state_dict`` keys are torchvision's: 6,624,904 without and
      13,004,888 with the auxiliary classifiers, so its pretrained weights load with
      ``strict=True`` (with ``aux_logits=True``: torchvision's weight file holds the
      auxiliary heads too). ``transform_input`` (torchvision's re-normalisation) is not
      offered: the data loader normalises.
    * ``googlenet_paper``: the paper's network: true 5x5 convolutions, convolution biases, no
      BatchNorm, local response normalisation after the first pool and after the third
      convolution. 5,977,530 parameters at 1x224x224 and 10 classes without the auxiliary
      classifiers.

    Deviations from the paper: ``googlenet``'s max pool before 5a is 2x2/2 (torchvision; the
    same 7x7 output at 224 px); all pools use ceil mode; the auxiliary classifiers pool
    adaptively to 4x4 instead of 5x5/3 (the same grid at 224 px); ``drop_rate`` (default 0;
    the paper used 0.4, torchvision 0.2) is the dropout before the last FC layer; the
    auxiliary heads keep the paper's 0.7.

    ``init``: ``truncated_normal`` (torchvision's: weights N(0, 0.01) truncated, zero biases;
    the default with BatchNorm) or ``pytorch`` (each layer's own PyTorch initialisation; the
    default of the paper layout). Without BatchNorm, torchvision's std-0.01 weights shrink the
    activations through 22 layers until nothing learns: the paper layout trained that way with
    mnist-five's recipe kept its loss at 2.30 for 5 epochs.

    ``aux_logits=True`` adds the two auxiliary classifiers (after 4a and 4d). In training mode
    the model then returns ``(logits, aux1, aux2)`` and the engine adds
    ``model.aux_weight`` (0.3, the paper's) times their losses; in eval mode it returns the
    logits only. Off by default: the parameter counts people quote are without them.

    Stems (``stem="auto"`` picks ``small`` below 112 px):

    * ``imagenet``: 7x7/2 convolution, 3x3/2 max pool, 1x1 and 3x3 convolutions, 3x3/2 max
      pool (total stride 8 before the Inception modules; 32 in all).
    * ``small``: ``conv1`` is 3x3/1 and ``maxpool1`` is ``nn.Identity``: total stride 2 before
      the Inception modules, so a 32 px input reaches 3a at 16x16, 4a at 8x8 and 5a at 4x4
      (224 px: 28, 14, 7). The only tensor that differs is ``conv1.conv.weight`` (3x3
      instead of 7x7).
    """

    cam_layer = "inception5b"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, paper: bool = False, /, *, num_classes: int = 1000, in_chans: int = 3,
                 input_size: int | tuple[int, int] = 224, drop_rate: float = 0.0, stem: str = "auto",
                 aux_logits: bool = False, aux_weight: float = 0.3, init: str | None = None) -> None:
        super().__init__()
        init = init or ("pytorch" if paper else "truncated_normal")
        if init not in ("pytorch", "truncated_normal"):
            raise UserError(f"init must be 'pytorch' or 'truncated_normal', got {init!r}")
        self.stem = resolve_stem(stem, input_size)
        self.aux_logits = aux_logits
        self.aux_weight = aux_weight
        bn = not paper

        def lrn() -> nn.Module:  # paper only; alpha is divided by the size in PyTorch
            return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if paper else nn.Identity()

        if self.stem == "small":
            self.conv1 = ConvBlock(in_chans, 64, bn, kernel_size=3, stride=1, padding=1)
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = ConvBlock(in_chans, 64, bn, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = ConvBlock(64, 64, bn, kernel_size=1)
        self.conv3 = ConvBlock(64, 192, bn, kernel_size=3, padding=1)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.stages: list[str] = []  # the module names after maxpool2, in forward order
        channels, pools, aux_in = 192, 2, {}
        for row in INCEPTION_TABLE:
            if row == "pool":
                pools += 1
                kernel = 2 if pools == 4 and not paper else 3  # torchvision: 2x2 before 5a
                name = f"maxpool{pools}"
                setattr(self, name, nn.MaxPool2d(kernel, stride=2, ceil_mode=True))
            else:
                name = f"inception{row[0]}"
                block = Inception(channels, *row[1:], bn=bn, kernel_5x5=5 if paper else 3)
                setattr(self, name, block)
                channels = block.out_channels
                if row[0] in _AUX_TAPS:
                    aux_in[_AUX_TAPS[row[0]]] = channels
            self.stages.append(name)
        self._taps = {f"inception{k}": v for k, v in _AUX_TAPS.items()}
        if aux_logits:
            self.aux1 = InceptionAux(aux_in["aux1"], num_classes, bn, drop_rate=0.7)
            self.aux2 = InceptionAux(aux_in["aux2"], num_classes, bn, drop_rate=0.7)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules() if init == "truncated_normal" else ():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = self.maxpool1(self.conv1(x))
        x = self.lrn1(x)
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))
        aux: list[Tensor] = []
        for name in self.stages:
            x = getattr(self, name)(x)
            if self.aux_logits and self.training and name in self._taps:
                aux.append(getattr(self, self._taps[name])(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (x, *aux) if aux else x


googlenet = register_model("googlenet", GoogLeNet, doc="GoogLeNet, torchvision's variant (BatchNorm, "
                                                       "3x3 in the 5x5 branch), state_dict-compatible")
googlenet_paper = register_model("googlenet_paper", partial(GoogLeNet, True),
                                 doc="GoogLeNet as in the paper (true 5x5, biases, LRN, no BatchNorm)")

# The lab report's GoogLeNet (../shared/seeds/001: study mnist-five).
googlenet_five = register_model(
    "googlenet_five", partial(GoogLeNet, True), study="mnist-five",
    doc="GoogLeNet of report ../shared/seeds/001_ff525e450deaf5fe.txt:214-226 (study mnist-five): "
        "Inception v1 \"按照论文结构编写\" (the paper's network, :226) on 56 px inputs with the "
        "ImageNet stem, global average pooling (:222, :240; LRN as the paper, parameter-free, so "
        "the count cannot confirm it), dropout 0.2 instead of the paper's "
        "0.4 (:224, :248; drop_rate, set by the study): googlenet_paper. 5,977,530 parameters at "
        "1x56x56 with the ImageNet stem and 10 classes (the report's table, :281); PyTorch's "
        "default initialisation (the report's code is not shown; student PyTorch code keeps "
        "it, and the paper layout does not learn with torchvision's)")
