"""ResNet-18/34/50/101/152."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnbench.errors import UserError
from cnnbench.models.common import resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["ResNet", "BasicBlock", "Bottleneck"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; Fig. 2 left.

    ``shared_conv1_shortcut=True`` (a lab report's ResNet-18, ``resnet18_five``): where the
    shape changes, the shortcut is the block's own first convolution again, with the same
    weights and no BatchNorm: ``F.conv2d(x, self.conv1.weight, stride=self.stride,
    padding=1)``; ``downsample`` is then ``None``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 stride_in_1x1: bool = False, shared_conv1_shortcut: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.shared_conv1_shortcut = shared_conv1_shortcut and (stride != 1 or cin != planes)

    def forward(self, x: Tensor) -> Tensor:
        if self.shared_conv1_shortcut:
            shortcut = F.conv2d(x, self.conv1.weight, stride=self.stride, padding=1)
        else:
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
    * ``shortcut="shared_conv1"`` (basic blocks only; default ``"projection"``): where the
      shape changes, no projection; the shortcut convolves the block input with the block's
      own first 3x3 convolution weights (shared, stride and padding as ``conv1``, no
      BatchNorm), as one lab report's ResNet-18 (``resnet18_five``).

    Stems (``stem="auto"`` picks ``small`` below 112 px):

    * ``imagenet``: 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max pool: total stride 32.
    * ``small``: 3x3/1 convolution and no max pool (``maxpool`` is ``nn.Identity``): total
      stride 8, the usual CIFAR ResNet (a 32 px image ends at 4x4). The only tensor that
      differs from the ImageNet stem is ``conv1.weight`` (3x3 instead of 7x7). ResNet-18 with
      this stem at 3x32x32 and 10 classes: 11,173,962 parameters, 0.56 GMACs.
    """

    cam_layer = "layer4"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, block: type[BasicBlock | Bottleneck] = BasicBlock, layers: tuple[int, ...] = (2, 2, 2, 2),
                 *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", zero_init_residual: bool = False,
                 stride_in_1x1: bool = False, shortcut: str = "projection") -> None:
        super().__init__()
        if shortcut not in ("projection", "shared_conv1"):
            raise UserError(f"shortcut must be 'projection' or 'shared_conv1', got {shortcut!r}")
        shared = shortcut == "shared_conv1"
        if shared and block is not BasicBlock:
            raise UserError("shortcut='shared_conv1' needs basic blocks (ResNet-18/34): a bottleneck's "
                            "first convolution is a 1x1 reduction, not the block's output shape")
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
            if (stride != 1 or channels != planes * block.expansion) and not shared:
                downsample = nn.Sequential(_conv1x1(channels, planes * block.expansion, stride),
                                           nn.BatchNorm2d(planes * block.expansion))
            extra = {"shared_conv1_shortcut": True} if shared else {}
            stage = [block(channels, planes, stride, downsample, stride_in_1x1, **extra)]
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

# The lab reports' ResNets (../shared/seeds/: 000 = study mnist-classics, 001 = mnist-five,
# 003 = cifar10-tricks).
resnet34_classics = register_model(
    "resnet34_classics", partial(ResNet, BasicBlock, (3, 4, 6, 3)), study="mnist-classics",
    doc="ResNet-34 of report ../shared/seeds/000_5fb1d57efed289c0.txt:164-342 (study "
        "mnist-classics): conv_bn_relu(1,64,7,2,3), MaxPool2d(3,2,1), BasicBlocks (two 3x3 "
        "conv+BN, ReLU after the add) [3,4,6,3] with a 1x1 stride-2 conv + BN projection where "
        "the shape changes, AvgPool2d(7), Flatten, Linear(512,classes): torchvision's layout, the "
        "same network as resnet34. (The text's add_block indents its loop of further blocks "
        "under the Bottleneck branch, :313-319, a mis-indentation like its MobileNet forward; "
        "the table it follows, :146-153, and ResNet34 = [3,4,6,3], :333-334, need it for both.) "
        "21,283,530 parameters at 1x224x224 (the study's size) and 10 classes")
resnet18_five = register_model(
    "resnet18_five", partial(ResNet, BasicBlock, (2, 2, 2, 2), shortcut="shared_conv1"), study="mnist-five",
    doc="ResNet-18 of report ../shared/seeds/001_ff525e450deaf5fe.txt:125-166 (study mnist-five): "
        "torchvision's ResNet-18 layout (7x7/2 stem and max pool: the ImageNet stem, on the "
        "study's 56 px inputs) without projection shortcuts: where the stride or the channels "
        "change the shortcut is the report's bug2 fix (:144-150), \"identity = "
        "nn.functional.conv2d(identity, self.conv1.weight, stride=self.stride, padding=1)\": "
        "the block's own first 3x3 convolution, shared weights, no BatchNorm; dropout "
        "(drop_rate; the study's 0.5) before the final FC layer (:162). 11,001,546 parameters "
        "at 1x56x56 with the ImageNet stem and 10 classes (the report's count, :166 and table "
        ":279)")
resnet18_tricks = register_model(
    "resnet18_tricks", partial(ResNet, BasicBlock, (2, 2, 2, 2)), study="cifar10-tricks",
    doc="ResNet-18 of report ../shared/seeds/003_12b1c3faa3378c9a.txt:166-231 (study "
        "cifar10-tricks): Conv2d(3,64,3,1,1) + BN + ReLU (no max pool), ResidualBlocks [2,2,2,2] "
        "with 1x1 conv + BN projections where the shape changes, F.avg_pool2d(out, 4) (global "
        "at 32 px), Linear(512,classes): the CIFAR ResNet-18, resnet18 with its small stem "
        "(chosen by stem='auto' below 112 px). 11,173,962 parameters at 3x32x32 and 10 classes")
