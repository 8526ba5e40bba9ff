"""MobileNet V1 (depthwise separable convolutions) and V2 (inverted residuals)."""

from __future__ import annotations

from torch import Tensor, nn

from cnnbench.models.common import init_fan_out, make_divisible, resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["MobileNetV1", "MobileNetV2", "V1_LAYERS", "V2_SETTING"]

# Howard et al. 2017, Table 1, after the first 3x3/2 convolution: one row per depthwise
# separable block, (stride of the 3x3 depthwise convolution, channels of the 1x1 pointwise one).
V1_LAYERS: tuple[tuple[int, int], ...] = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
    (2, 1024), (1, 1024),  # Table 1 prints s2 for the last one; 7x7 in and out means stride 1
)

# Sandler et al. 2018, Table 2: expansion t, output channels c, repeats n, first stride s.
V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNAct(nn.Sequential):
    """Convolution (no bias), BatchNorm, activation; children ``0``, ``1``, ``2`` as
    torchvision's ``Conv2dNormActivation``, so state_dict keys line up."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            activation(inplace=True),
        )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise convolution and 1x1 pointwise convolution, each with BatchNorm and ReLU
    (Howard et al. 2017, Fig. 3 right)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBNAct(cin, cin, 3, stride, groups=cin, activation=nn.ReLU)
        self.pw = ConvBNAct(cin, cout, 1, activation=nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNet (V1): A. G. Howard et al., "MobileNets: Efficient convolutional neural networks
    for mobile vision applications", arXiv 1704.04861 (2017), Table 1.

    A 3x3/2 convolution, then 13 depthwise separable blocks (``V1_LAYERS``), global average
    pooling and one FC layer; BatchNorm and ReLU after every convolution. At 3x224x224 and 1000
    classes it has the paper's 4.2M parameters (4,231,976 including BatchNorm) and 569M MACs.
    ``width_mult`` is the paper's width multiplier alpha; channels are rounded to multiples of
    8 as in the TensorFlow reference code (no change at alpha = 1). The paper's resolution
    multiplier is the input size. torchvision has no MobileNet V1: the module names follow
    ``mobilenet_v2`` (``features``, ``classifier``).

    Deviations: the last depthwise convolution has stride 1 (Table 1 prints s2, but its input
    and output are both 7x7); ``drop_rate`` > 0 adds dropout before the FC layer (the paper
    mentions none).

    Stems (``stem="auto"`` picks ``small`` below 112 px): ``imagenet`` is the paper's (total
    stride 32, 7x7 final map at 224 px). ``small`` gives the first convolution and the first
    stride-2 block (64 -> 128 channels) stride 1: total stride 8, so a 32 px input ends at 4x4
    as a 224 px one ends at 7x7. No tensor differs between the stems, only strides.
    """

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", width_mult: float = 1.0) -> None:
        super().__init__()
        self.stem = resolve_stem(stem, input_size)
        small = self.stem == "small"
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_chans, channels, 3, 1 if small else 2, activation=nn.ReLU)]
        first_downsample = True
        for stride, cout in V1_LAYERS:
            if small and stride == 2 and first_downsample:
                stride, first_downsample = 1, False
            cout = make_divisible(cout * width_mult)
            layers.append(DepthwiseSeparable(channels, cout, stride))
            channels = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(channels, num_classes))
        init_fan_out(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class InvertedResidual(nn.Module):
    """1x1 expansion (ReLU6), 3x3 depthwise (ReLU6), linear 1x1 projection; a residual
    connection when the shape is unchanged (Sandler et al. 2018, Fig. 4d / Table 1)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # t = 1 would be a 1x1 convolution to the same width: skipped
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2:
    Inverted residuals and linear bottlenecks", CVPR 2018, Table 2 (``V2_SETTING``).

    A 3x3/2 convolution to 32 channels, 17 inverted-residual blocks, a 1x1 convolution to 1280
    channels, global average pooling and one FC layer. ``width_mult`` scales every width (the
    last 1x1 convolution only up, never below 1280) with channels rounded to multiples of 8.
    At 3x224x224 and 1000 classes the parameters and ``state_dict`` keys are torchvision's
    (3,504,872), so its pretrained weights load with ``strict=True``. ``drop_rate`` sets the
    dropout before the FC layer (default 0; torchvision's default is 0.2, which changes
    nothing in eval mode).

    Stems (``stem="auto"`` picks ``small`` below 112 px): ``imagenet`` is the paper's (total
    stride 32). ``small`` gives the first convolution and the first stride-2 row of the table
    (24 channels) stride 1: total stride 8, a 32 px input ends at 4x4 as a 224 px one ends at
    7x7 (the common CIFAR adaptation). No tensor differs between the stems, only strides.
    """

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", width_mult: float = 1.0) -> None:
        super().__init__()
        self.stem = resolve_stem(stem, input_size)
        small = self.stem == "small"
        channels = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(in_chans, channels, 3, 1 if small else 2)]
        first_downsample = True
        for t, c, n, s in V2_SETTING:
            if small and s == 2 and first_downsample:
                s, first_downsample = 1, False
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, cout, s if i == 0 else 1, t))
                channels = cout
        layers.append(ConvBNAct(channels, self.last_channel, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(self.last_channel, num_classes))
        init_fan_out(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


mobilenet_v1 = register_model("mobilenet_v1", MobileNetV1, doc="MobileNet V1 (Howard et al. 2017), "
                                                               "width multiplier")
mobilenet_v2 = register_model("mobilenet_v2", MobileNetV2, doc="MobileNetV2 (Sandler et al. 2018), "
                                                               "width multiplier, torchvision-compatible")
