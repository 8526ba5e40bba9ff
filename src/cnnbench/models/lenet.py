"""LeNet-5 and the small CIFAR baseline CNN that shares its layout."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from cnnbench.errors import UserError
from cnnbench.models.common import flat_features, make_activation, to_hw
from cnnbench.models.registry import register_model

__all__ = ["LeNet5", "lenet5", "simple_cnn", "lenet5_classics", "lenet5_five"]

_PAPER_SIZE = 32  # LeCun et al. centre the 28x28 MNIST digits in a 32x32 field
_ACTIVATED = ("c1", "c3", "c5", "f6")  # the layers an activation follows, in the paper
_MONOTONE = ("relu", "relu6", "tanh", "sigmoid")  # non-decreasing: max-pooling commutes with them


class LeNet5(nn.Module):
    """LeNet-5: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
    document recognition", Proc. IEEE 86(11), 1998 (section II.B, Fig. 2).

    Layout: C1 conv 5x5-6, S2 pool 2, C3 conv 5x5-16, S4 pool 2, C5 FC-120, F6 FC-84, output FC.
    This is the "standard layout" of the textbooks and of the lab reports; it deviates from the
    paper in these ways:

    * C3 connects every S2 map to every C3 map (the paper's Table I connects each C3 map to
      3-6 of the S2 maps only: 1,516 instead of 2,416 parameters).
    * S2/S4 are plain average (``pool="avg"``, the default) or max pooling; the paper's
      subsampling units have a trainable coefficient and bias per map.
    * ``activation="tanh"`` is ``torch.tanh``, not the paper's scaled ``1.7159 tanh(2a/3)``;
      ``sigmoid`` and ``relu`` are offered because the lab reports used them.
    * The output layer is linear (logits for cross-entropy) instead of Euclidean RBF units.
    * C5 is a fully connected layer. On the paper's 32x32 input it is the same thing (a 5x5
      convolution over a 5x5 map); on other sizes its input is sized from the feature map.
    * ``drop_rate`` > 0 adds dropout after F5 and F6 (the paper has none).
    * ``activate`` names the layers an activation follows (default: all four hidden layers,
      ``("c1", "c3", "c5", "f6")``); one lab report's LeNet has an activation after F6 only
      (``lenet5_classics``). A layer left out has no activation module at all.
    * ``channels`` sets the maps of C1 and C3 (default the paper's ``(6, 16)``), and
      ``c1_stride=2`` makes C1 convolve with stride 2 in place of S2's subsampling (S2 is then
      left out): the fast MNIST recipe's variant (``cnnbench recipes fast``), which spends
      less of a CPU's time at the input's full resolution.

    28x28 inputs (MNIST) are handled in one of two ways, chosen with ``pad_input``:

    * ``pad_input=True`` (default, as the paper): inputs smaller than 32x32 are padded to 32x32
      by repeating their border pixels (the background, for MNIST digits), so C5 sees 16x5x5
      inputs: 61,706 parameters for 1x28x28 and 10 classes.
    * ``pad_input=False`` (as one of the lab reports): no padding, C5 sees 16x4x4 inputs:
      44,426 parameters for 1x28x28 and 10 classes.

    There is no stem switch: ``stem`` is accepted for a uniform interface and ignored
    (``model.stem`` is ``None``).
    """

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", activation: str = "tanh", pool: str = "avg",
                 pad_input: bool = True, activate: tuple[str, ...] = _ACTIVATED,
                 channels: tuple[int, int] = (6, 16), c1_stride: int = 1) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise UserError(f"pool must be 'avg' or 'max', got {pool!r}")
        if (not isinstance(channels, (list, tuple)) or len(channels) != 2
                or any(type(c) is not int or c < 1 for c in channels)):
            raise UserError(f"channels must be two positive integers (C1's and C3's maps), got {channels!r}")
        if type(c1_stride) is not int or c1_stride not in (1, 2):
            raise UserError(f"c1_stride must be 1 or 2 (2: C1 subsamples in place of S2), got {c1_stride!r}")
        unknown = sorted(set(activate) - set(_ACTIVATED))
        if unknown:
            raise UserError(f"activate must name layers among {', '.join(_ACTIVATED)}, got {', '.join(unknown)}")

        def act(layer: str, name: str) -> list[tuple[str, nn.Module]]:
            return [(name, make_activation(activation))] if layer in activate else []

        pool_layer = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        # max(f(a), f(b)) = f(max(a, b)) for a non-decreasing f: with max-pooling the activation
        # is applied to the pooled map, the same numbers from a quarter of the values (about a
        # sixth of a LeNet-5 training step's time on a CPU went to ReLU and its backward)
        pool_first = pool == "max" and activation in _MONOTONE

        def conv_block(conv: str, act_name: str, pool_name: str | None, layer: nn.Module):
            acts, pooling = act(conv, act_name), [(pool_name, pool_layer(2))] if pool_name else []
            return [(conv, layer), *(pooling + acts if pool_first else acts + pooling)]
        self.stem = None
        self.pad_input = pad_input
        height, width = to_hw(input_size)
        if pad_input:
            height, width = max(height, _PAPER_SIZE), max(width, _PAPER_SIZE)
        # Layer names follow the paper's Fig. 2 (C = convolution, S = subsampling, F = full).
        self.features = nn.Sequential(OrderedDict([
            *conv_block("c1", "act1", "s2" if c1_stride == 1 else None,
                        nn.Conv2d(in_chans, channels[0], kernel_size=5, stride=c1_stride)),
            *conv_block("c3", "act3", "s4", nn.Conv2d(channels[0], channels[1], kernel_size=5)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("c5", nn.Linear(flat_features(self.features, in_chans, (height, width)), 120)),
            *act("c5", "act5"),
            ("drop5", nn.Dropout(drop_rate)),
            ("f6", nn.Linear(120, 84)),
            *act("f6", "act6"),
            ("drop6", nn.Dropout(drop_rate)),
            ("output", nn.Linear(84, num_classes)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        if self.pad_input:
            pad_h, pad_w = max(0, _PAPER_SIZE - x.shape[-2]), max(0, _PAPER_SIZE - x.shape[-1])
            if pad_h or pad_w:
                x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")
        return self.classifier(self.features(x))


lenet5 = register_model("lenet5", LeNet5, doc="LeNet-5 (LeCun et al. 1998), tanh + average pooling, "
                                               "28 px inputs padded to 32 as in the paper")
simple_cnn = register_model(
    "simple_cnn", partial(LeNet5, activation="relu", pool="max", pad_input=False), study="cifar10-tricks",
    doc="Simple CNN: 6c5-pool-16c5-pool-fc120-fc84 with ReLU and max pooling, unpadded (the "
        "lab reports' CIFAR-10 baseline, ../shared/seeds/003_12b1c3faa3378c9a.txt:145-162; the "
        "PyTorch CIFAR-10 tutorial network); 62,006 parameters at 3x32x32")

# The lab reports' LeNets (../shared/seeds/: 000 = study mnist-classics, 001 = mnist-five).
lenet5_classics = register_model(
    "lenet5_classics", partial(LeNet5, activate=("f6",), pad_input=False), study="mnist-classics",
    doc="LeNet of report ../shared/seeds/000_5fb1d57efed289c0.txt:62-84 (study mnist-classics): "
        "Conv(1,6,5) -> AvgPool2d(2) -> Conv(6,16,5) -> AvgPool2d(2) -> Flatten -> "
        "Linear(400,120) -> Linear(120,84) -> Tanh -> Linear(84,classes): one Tanh, after F6 "
        "only, no activation after the convolutions or F5 (as the report's code; its text at "
        ":59 says Tanh is the activation). Linear(400) needs 32x32 inputs (the study resizes "
        "28 -> 32); no padding of its own (pad_input=False), other sizes size F5 from the "
        "feature map. 61,706 parameters at 1x32x32 and 10 classes (44,426 at 1x28x28)")
lenet5_five = register_model(
    "lenet5_five", partial(LeNet5, activation="sigmoid", pool="max", pad_input=False), study="mnist-five",
    doc="LeNet of report ../shared/seeds/001_ff525e450deaf5fe.txt:59-69 (study mnist-five): "
        "sigmoid activations, max pooling, 28x28 inputs unpadded so the FC input is 16x4x4 "
        "(\"修改全连接层的输入维度16*5*5为16*4*4\", :64); logits out (the report's softmax, :67, is "
        "left to the cross-entropy loss); the report's \"模型总参数量为44,426\" "
        "(:69, and its table :277): 44,426 parameters at 1x28x28 and 10 classes")
