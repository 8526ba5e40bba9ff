"""MobileNet V1 (depthwise separable convolutions) and V2 (inverted residuals)."""

from __future__ import annotations

from torch import Tensor, nn

from cnnbench.models.common import init_fan_out, make_divisible, resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["MobileNetV1", "MobileNetV2", "MobileNetV2Classics", "V1_LAYERS", "V2_SETTING"]

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

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

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

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

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


class _ClassicsBottleneck(nn.Module):
    """The bottleneck of report 000 (``MobileNetBottleNeck``, see :class:`MobileNetV2Classics`):
    conv 1x1 (expansion, also for t = 1), BN, ReLU6, depthwise 3x3, BN, ReLU6, conv 1x1, BN, every
    convolution with a bias; on every stride-1 block a shortcut, identity or a 1x1 conv + BN."""

    def __init__(self, cin: int, cout: int, expand_ratio: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1), nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module | None = None
        if stride == 1:
            self.shortcut = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1),
                                                                           nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2Classics(nn.Module):
    """The MobileNetV2 of lab report 000 (../shared/seeds/000_5fb1d57efed289c0.txt:497-564,
    ``MobileNetBottleNeck`` and ``MobileNetV2``; the table it follows is Sandler et al.'s
    Table 2, quoted at :447-458). It differs from :class:`MobileNetV2` (torchvision's) in ways
    that change the parameters, so it has its own class:

    * stem ``Conv2d(in, 32, 3, 2, 1)`` with bias, ``BatchNorm2d(32)`` and no activation;
    * every bottleneck (t, c, n, s as ``V2_SETTING``) is ``Conv2d(in, in*t, 1)``, BN, ReLU6,
      ``Conv2d(in*t, in*t, 3, groups=in*t, stride=s, padding=1)``, BN, ReLU6,
      ``Conv2d(in*t, out, 1)``, BN: every convolution has a bias, and the 1x1 expansion is
      there for t = 1 too;
    * "if stride == 1: self.do_shortcut = True": a shortcut on every stride-1 block, the
      identity if in == out, else ``Conv2d(in, out, 1)`` (bias) + BN; no activation after
      the add;
    * head ``Conv2d(320, 1280, 1, 1)`` with bias and no BN or activation, ``AvgPool2d(7)``
      (here a global average pool: the same at 224 px, and any input size works),
      ``Flatten``, ``Linear(1280, classes)``.

    The report's text indents ``MobileNetBottleNeck.forward`` inside ``__init__`` and calls
    the class ``MobileNetBottleneck`` in ``add_bottleneck`` (:523-527, :557-561); the intent
    (forward as written, one class) is clear and is what is built here.

    2,310,874 parameters at 1x224x224 (the study's size) and 10 classes. ``drop_rate`` > 0
    adds dropout before the FC layer (the report has none: its dropout option was for AlexNet
    and VGG-16 only, :889); PyTorch's default initialisation, as the report. No stem switch:
    ``stem`` is ignored and ``model.stem`` is ``None`` (a 28 px input ends at 1x1).
    """

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto") -> None:
        super().__init__()
        self.stem = None
        channels = 32
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_chans, channels, 3, 2, 1), nn.BatchNorm2d(channels))]
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                layers.append(_ClassicsBottleneck(channels, c, t, s if i == 0 else 1))
                channels = c
        layers.append(nn.Conv2d(channels, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


mobilenet_v2_classics = register_model(
    "mobilenet_v2_classics", MobileNetV2Classics, study="mnist-classics",
    doc="MobileNetV2 of report ../shared/seeds/000_5fb1d57efed289c0.txt:497-564 (study "
        "mnist-classics): conv biases, no stem activation, a shortcut (identity or 1x1 conv + "
        "BN) on every stride-1 block, head conv 1x1 320->1280 without BN; 2,310,874 parameters "
        "at 1x224x224 and 10 classes")
mobilenet_v1_five = register_model(
    "mobilenet_v1_five", MobileNetV1, study="mnist-five",
    doc="MobileNetV1 of report ../shared/seeds/001_ff525e450deaf5fe.txt:180-198 (study mnist-five): "
        "\"其余部分按照论文结构编写\" (the paper's network, :198) on 56 px inputs with the ImageNet "
        "stem, the 7x7 average pool made global (:196), dropout before the FC layer (:194; "
        "drop_rate, the study's 0.5): mobilenet_v1. 3,216,650 parameters at 1x56x56 with the "
        "ImageNet stem and 10 classes (the report's table, :280)")
