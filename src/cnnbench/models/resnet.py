"""ResNet-18/34/50/101/152."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from cnnbench.models.common import resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["ResNet", "BasicBlock", "Bottleneck"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; Fig. 2 left."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut; Fig. 5 right.

    ``stride_in_1x1=False`` puts a block's stride in the 3x3 convolution (torchvision's
    "ResNet v1.5", slightly more accurate on ImageNet); ``True`` puts it in the
    first 1x1 convolution, as the paper's original Caffe models do."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 stride_in_1x1: bool = False) -> None:
        super().__init__()
        width = planes
        self.conv1 = _conv1x1(cin, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition",
    CVPR 2016 (Table 1: 18 and 34 layers with basic blocks, 50/101/152 with bottlenecks).

    At 3x224x224 and 1000 classes the parameters and ``state_dict`` keys are torchvision's
    (``resnet18``: 11,689,512; ``resnet50``: 25,557,032), so its pretrained weights load with
    ``strict=True``. Deviations from the paper, all shared with torchvision:

    * Shortcuts are identities, with 1x1 projections where the shape changes (the paper's
      option B).
    * Bottleneck blocks put their stride in the 3x3 convolution ("v1.5"); pass
      ``stride_in_1x1=True`` for the paper's placement in the first 1x1 convolution (same
      parameters and keys, different activations; no effect on ResNet-18/34).
    * ``zero_init_residual=True`` starts every block's last BatchNorm at zero, so each block
      begins as the identity (Goyal et al. 2017); off by default, as in torchvision.
    * ``drop_rate`` > 0 adds dropout before the final FC layer (the paper has none).

    Stems (``stem="auto"`` picks ``small`` below 112 px):

    * ``imagenet``: 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max pool: total stride 32.
    * ``small``: 3x3/1 convolution and no max pool (``maxpool`` is ``nn.Identity``): total
      stride 8, the usual CIFAR ResNet (a 32 px image ends at 4x4). The only tensor that
      differs from the ImageNet stem is ``conv1.weight`` (3x3 instead of 7x7). ResNet-18 with
      this stem at 3x32x32 and 10 classes: 11,173,962 parameters, 0.56 GMACs.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck] = BasicBlock, layers: tuple[int, ...] = (2, 2, 2, 2),
                 *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", zero_init_residual: bool = False,
                 stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.stem = resolve_stem(stem, input_size)
        if self.stem == "small":
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # nn.Identity keeps the attribute (and the forward) the same for both stems
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if self.stem == "imagenet" else nn.Identity()

        channels = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or channels != planes * block.expansion:
                downsample = nn.Sequential(_conv1x1(channels, planes * block.expansion, stride),
                                           nn.BatchNorm2d(planes * block.expansion))
            stage = [block(channels, planes, stride, downsample, stride_in_1x1)]
            channels = planes * block.expansion
            stage += [block(channels, planes, stride_in_1x1=stride_in_1x1) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


resnet18 = register_model("resnet18", partial(ResNet, BasicBlock, (2, 2, 2, 2)), doc="ResNet-18")
resnet34 = register_model("resnet34", partial(ResNet, BasicBlock, (3, 4, 6, 3)), doc="ResNet-34")
resnet50 = register_model("resnet50", partial(ResNet, Bottleneck, (3, 4, 6, 3)), doc="ResNet-50")
resnet101 = register_model("resnet101", partial(ResNet, Bottleneck, (3, 4, 23, 3)), doc="ResNet-101")
resnet152 = register_model("resnet152", partial(ResNet, Bottleneck, (3, 8, 36, 3)), doc="ResNet-152")
