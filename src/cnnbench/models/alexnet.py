"""AlexNet: torchvision's layout, the 2012 paper's layout, and the lab report's CIFAR network."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from cnnbench.models.common import flat_features, head_pool, make_activation, resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["AlexNet", "AlexNetSmall", "alexnet", "alexnet_paper", "alexnet_small", "alexnet_classics",
           "alexnet_five", "alexnet_large_five"]

# Channels of the five convolutions.
_TORCHVISION_WIDTHS = (64, 192, 384, 256, 256)  # Krizhevsky 2014, "One weird trick ..."
_PAPER_WIDTHS = (96, 256, 384, 384, 256)        # Krizhevsky et al. 2012, Fig. 2 (both towers)
_HALF_WIDTHS = tuple(w // 2 for w in _PAPER_WIDTHS)  # 48-128-192-192-128, lab report 001


class AlexNet(nn.Module):
    """AlexNet: A. Krizhevsky, I. Sutskever, G. Hinton, "ImageNet classification with deep
    convolutional neural networks", NeurIPS 2012.

    Five convolutions (11x11/4, 5x5, 3x3, 3x3, 3x3) with max pooling 3/2 after the first,
    second and fifth, then FC-4096, FC-4096, FC-classes with dropout before the first two.
    ``widths`` chooses the convolution channels:

    * ``alexnet``: 64-192-384-256-256, the later single-GPU variant of A. Krizhevsky, "One weird
      trick for parallelizing convolutional neural networks", arXiv 1404.5997 (2014), without
      local response normalisation. This is torchvision's ``alexnet``: at 3x224x224 and 1000
      classes the parameters and ``state_dict`` keys are torchvision's (61,100,840), so its
      pretrained weights load with ``strict=True``.
    * ``alexnet_paper``: 96-256-384-384-256, the 2012 paper's network as one tower (the paper
      split every layer over two GPUs; conv2, conv4 and conv5 saw only their own GPU's half of
      the previous layer, which halves their weights; here they see all of it), with local
      response normalisation after the first two ReLUs (``lrn=True``; size 5, k=2, beta=0.75,
      and alpha=5e-4 because PyTorch divides alpha by the size, the paper's 1e-4 does not).
      58,299,082 parameters at 1x224x224 and 10 classes.

    Deviations common to both: the first convolution pads by 2 so a 224 px input gives the
    paper's 55x55 map (the paper's arithmetic needs 227 px); ``drop_rate`` (default 0, the paper
    used 0.5) sets both dropout layers; PyTorch's default initialisation, not the paper's.

    Stems (``stem="auto"`` picks ``small`` below 112 px):

    * ``imagenet``: as above; the last pooling is an adaptive 6x6 average pool (torchvision),
      which is the identity for 224 px inputs. Needs inputs of at least 63x63.
    * ``small``: the first convolution is 3x3, stride 1, padding 1 (the 11x11/4 filter would
      reduce a 32 px image to 7x7 at once), the three max pools stay, the last pooling is a
      global average pool, and the FC layers have ``fc_width`` units (default 512 for the small
      stem, 4096 for the ImageNet stem). Tensors that differ from the ImageNet stem:
      ``features.0.weight`` (kxk 3 instead of 11) and the three ``classifier`` Linear layers
      (``classifier.1`` takes ``widths[-1]`` inputs instead of ``widths[-1] * 36``).

    Options for the lab reports' variants (defaults: as above):

    * ``conv1=(kernel, stride, padding)`` fixes the first convolution instead of the stem
      switch (``stem`` is then ignored and ``model.stem`` is ``None``; ``fc_width`` defaults
      to 4096).
    * ``pool_padding`` pads the three 3x3/2 max pools (default 0).
    * ``flatten=True`` flattens the last feature map as it is, with no adaptive average pool,
      and sizes the first FC layer from it (the reports hard-code that size for their input).
    """

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, widths: tuple[int, ...] = _TORCHVISION_WIDTHS, *, num_classes: int = 1000,
                 in_chans: int = 3, input_size: int | tuple[int, int] = 224, drop_rate: float = 0.0,
                 stem: str = "auto", fc_width: int | None = None, lrn: bool = False,
                 conv1: tuple[int, int, int] | None = None, pool_padding: int = 0,
                 flatten: bool = False) -> None:
        super().__init__()
        self.stem = None if conv1 is not None else resolve_stem(stem, input_size)
        small = self.stem == "small"
        if conv1 is not None:
            kernel, stride, padding = conv1
            first = nn.Conv2d(in_chans, widths[0], kernel_size=kernel, stride=stride, padding=padding)
        elif small:  # keep the receptive field growing slowly on a 28-32 px image
            first = nn.Conv2d(in_chans, widths[0], kernel_size=3, stride=1, padding=1)
        else:
            first = nn.Conv2d(in_chans, widths[0], kernel_size=11, stride=4, padding=2)

        def norm() -> list[nn.Module]:
            return [nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)] if lrn else []

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding)

        self.features = nn.Sequential(
            first, nn.ReLU(inplace=True), *norm(), pool(),
            nn.Conv2d(widths[0], widths[1], kernel_size=5, padding=2), nn.ReLU(inplace=True), *norm(),
            pool(),
            nn.Conv2d(widths[1], widths[2], kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(widths[2], widths[3], kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(widths[3], widths[4], kernel_size=3, padding=1), nn.ReLU(inplace=True),
            pool(),
        )
        fc_width = fc_width or (512 if small else 4096)
        self.avgpool, fc_in = head_pool(self.features, in_chans, input_size,
                                        None if flatten else 1 if small else 6)
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate),
            nn.Linear(fc_in, fc_width), nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNetSmall(nn.Module):
    """The AlexNet-style CIFAR-10 network of the lab reports' ablation (plain -> +BatchNorm ->
    +Dropout), after Krizhevsky et al. 2012 scaled to 32x32 images.

    Exactly the report's layout (map sizes for a 32x32 input in brackets):
    conv 3x3-96 pad 1 [32] -> max-pool 2 [16] -> conv 5x5-128 pad 2 [16] -> max-pool 2 stride 1
    [15] -> conv 3x3-256 no pad [13] -> conv 3x3-256 pad 1 [13] -> conv 3x3-128 pad 1 [13] ->
    max-pool 2 [6] -> FC 4608 (=128x6x6) -> 128 -> 64 -> classes.

    With ``bn=True`` (default) a BatchNorm comes before every ReLU, including BatchNorm1d
    after the two hidden FC layers; the convolutions keep their biases, as in the report.
    ``drop_rate`` > 0 adds dropout after the two hidden FC layers only (the "+Dropout" step).
    2,091,274 parameters with BN at 3x32x32 and 10 classes; other input sizes size the first
    FC layer from the feature map. No local response normalisation and no stem switch
    (``model.stem`` is ``None``).

    ``bn_momentum`` (default 0.9) is the ``momentum`` of every BatchNorm2d and BatchNorm1d: the
    report's printed model has ``BatchNorm2d(96, eps=1e-05, momentum=0.9, ...)``
    (../shared/seeds/004_2d0eec9dd5bad1f5.txt:94). In PyTorch the running statistics are
    updated as ``(1 - momentum) * running + momentum * batch``, so 0.9 makes them follow the
    latest batch with weight 0.9 (nearly the last batch's statistics), unlike PyTorch's
    default 0.1 (a slow average). Keras and TensorFlow weigh the old average with their
    momentum, so 0.9 is a slow average there: the likely origin of the setting. It is the
    report's printed setting, so it is the default here; pass ``bn_momentum=0.1`` for
    PyTorch's.

    ``activation`` (default ``relu``, the report's printed layout) is the nonlinearity after
    every convolution and hidden FC layer: any of cnnbench's activations (``sigmoid``,
    ``tanh``, ``gelu``, ``relu6``; :func:`~cnnbench.models.common.make_activation`). The report
    tried Sigmoid against ReLU, with and without BatchNorm
    (../shared/seeds/004_2d0eec9dd5bad1f5.txt:81-83).
    """

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple[int, int] = 224,
                 drop_rate: float = 0.0, stem: str = "auto", bn: bool = True,
                 bn_momentum: float = 0.9, activation: str = "relu") -> None:
        super().__init__()
        self.stem = None
        make_activation(activation)  # an unknown name fails here, once

        def act() -> nn.Module:
            return nn.ReLU(inplace=True) if activation == "relu" else make_activation(activation)

        def conv(cin: int, cout: int, kernel: int, padding: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(cout, momentum=bn_momentum)] if bn else []
            return [nn.Conv2d(cin, cout, kernel, padding=padding), *norm, act()]

        def fc(cin: int, cout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm1d(cout, momentum=bn_momentum)] if bn else []
            return [nn.Linear(cin, cout), *norm, act(), nn.Dropout(drop_rate)]

        self.features = nn.Sequential(
            *conv(in_chans, 96, 3, padding=1), nn.MaxPool2d(2),
            *conv(96, 128, 5, padding=2), nn.MaxPool2d(2, stride=1),
            *conv(128, 256, 3, padding=0),
            *conv(256, 256, 3, padding=1),
            *conv(256, 128, 3, padding=1), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            *fc(flat_features(self.features, in_chans, input_size), 128),
            *fc(128, 64),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


alexnet = register_model("alexnet", AlexNet, doc="AlexNet, torchvision layout (64-192-384-256-256; "
                                                 "Krizhevsky 2014), state_dict-compatible")
alexnet_paper = register_model("alexnet_paper", partial(AlexNet, _PAPER_WIDTHS, lrn=True),
                               doc="AlexNet as in the 2012 paper (96-256-384-384-256, LRN), one tower")
alexnet_small = register_model("alexnet_small", AlexNetSmall, study="alexnet-ablation",
                               doc="The lab report's CIFAR AlexNet (5 conv + 3 FC, bn/dropout switches; "
                                   "../shared/seeds/004_2d0eec9dd5bad1f5.txt:92-179), BatchNorm momentum "
                                   "0.9 as printed there")

# The lab reports' AlexNets (../shared/seeds/: 000 = study mnist-classics, 001 = mnist-five).
alexnet_classics = register_model(
    "alexnet_classics", partial(AlexNet, _PAPER_WIDTHS, fc_width=2048), study="mnist-classics",
    doc="AlexNet of report ../shared/seeds/000_5fb1d57efed289c0.txt:105-137 (study mnist-classics): "
        "Conv(1,96,11,4,2) ReLU MaxPool(3,2) Conv(96,256,5,1,2) ReLU MaxPool(3,2) Conv(256,384,3,1,1) "
        "ReLU Conv(384,384,3,1,1) ReLU Conv(384,256,3,1,1) ReLU MaxPool(3,2), Flatten, Dropout, "
        "Linear(256*6*6,2048), ReLU, Dropout, Linear(2048,2048), ReLU, Linear(2048,classes): the "
        "paper's widths without LRN, FC-2048 instead of 4096; the report's dropout 0.5 is "
        "drop_rate. 26,817,226 parameters at 1x224x224 (the study's size) and 10 classes; below "
        "112 px the small stem (FC width stays 2048)")
alexnet_five = register_model(
    "alexnet_five", partial(AlexNet, _HALF_WIDTHS, conv1=(5, 1, 2), pool_padding=1, flatten=True),
    study="mnist-five",
    doc="AlexNet of report ../shared/seeds/001_ff525e450deaf5fe.txt:109-117 (study mnist-five), "
        "\"将原模型的第一步卷积核从11x11改为5x5，步长改为1，将所有卷积核数均除以2，图片尺寸缩放为2倍\": "
        "conv1 5x5 stride 1 (pad 2), the paper's widths halved (48-128-192-192-128), FC-4096, "
        "FC-4096, dropout (drop_rate; the study's 0.5, :248) before both, on 56x56 inputs. The "
        "report's code is not in the text, only its count, 43,446,122 (:117, table :278), which "
        "needs a 128x7x7 flatten: the max pools are the paper's overlapping 3x3/2 with padding 1 "
        "(56 -> 28 -> 14 -> 7), padding inferred from the parameter count. 43,446,122 parameters "
        "at 1x56x56 and 10 classes; other sizes size the first FC layer from the feature map; no "
        "stem switch")
alexnet_large_five = register_model(
    "alexnet_large_five", partial(AlexNet, _PAPER_WIDTHS, conv1=(11, 4, 2), flatten=True),
    study="mnist-five",
    doc="AlexNetLarge of report ../shared/seeds/001_ff525e450deaf5fe.txt:95-107 (study mnist-five), "
        "\"网格结构与论文相同，模型参数量为58,299,082\" (:107): the paper's layout on MNIST upsampled "
        "x8 to 224x224 (\"nn.Upsample(scale_factor=8, mode='bilinear')\", :98): conv1 11x11 "
        "stride 4 (pad 2: 224 -> 55), the paper's widths 96-256-384-384-256, the unpadded "
        "overlapping 3x3/2 max pools (55 -> 27 -> 13 -> 6), the 256x6x6 map flattened into "
        "FC-4096, FC-4096, FC-classes, dropout (drop_rate) before the first two, as in "
        "alexnet_five, which the report derived from it (:113: conv1 5x5 stride 1, widths "
        "halved, inputs x2 instead of x8). The code is not in the report; the count fixes the "
        "9,216-wide flatten (padded pools would leave 7x7). Local response normalisation, "
        "which adds no parameters, is left out as in alexnet_five. The report describes it but "
        "trained the reduced alexnet_five, for time (:111, :238). 58,299,082 parameters at "
        "1x224x224 and 10 classes; other sizes size the first FC layer from the feature map; "
        "no stem switch")
