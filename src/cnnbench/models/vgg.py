"""VGG-11/13/16/19, with and without BatchNorm."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from cnnbench.models.common import head_pool, init_fan_out, resolve_stem
from cnnbench.models.registry import register_model

__all__ = ["VGG", "CONFIGS"]

# Simonyan & Zisserman, Table 1: channels of each 3x3 convolution, "M" = 2x2 max-pool.
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),                  # VGG-11
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),         # VGG-13
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),                                                               # VGG-16
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),                                                          # VGG-19
}


class VGG(nn.Module):
    """VGG: K. Simonyan, A. Zisserman, "Very deep convolutional networks for large-scale image
    recognition", ICLR 2015 (configurations A, B, D, E of Table 1 = VGG-11, -13, -16, -19).

    Stacks of 3x3 convolutions (padding 1) separated by 2x2 max pools, then FC-4096, FC-4096,
    FC-classes with dropout after the first two. ``bn=True`` adds BatchNorm after every
    convolution (the ``_bn`` variants; Ioffe & Szegedy 2015, not in the paper).

    At 3x224x224 and 1000 classes the parameters and ``state_dict`` keys are torchvision's
    (``vgg16``: 138,357,544), so torchvision's pretrained weights load with ``strict=True``.
    Deviations from the paper, all shared with torchvision: an adaptive 7x7 average pool
    before the classifier (the identity at 224 px); ``drop_rate`` sets the two dropout layers
    (default 0; the paper used 0.5); the paper's A-LRN and C (1x1 convolutions) configurations
    are not offered; initialisation is Kaiming-normal (He et al. 2015), not the paper's
    shallow-net transfer.

    Stems (``stem="auto"`` picks ``small`` below 112 px):

    * ``imagenet``: as above; five pools, so inputs of at least 32x32.
    * ``small``: the same convolutions; the fifth max pool is dropped and the 7x7 pool becomes
      a global average pool (a 28 px image would not survive five halvings; 32 px ends at
      2x2), and the FC layers have ``fc_width`` units (default 512 for the small stem, as the
      usual CIFAR adaptations of VGG; 4096 for the ImageNet stem). Tensors that differ from the
      ImageNet stem: the three ``classifier`` Linear layers only (``classifier.0`` takes 512
      inputs instead of 512x7x7); every ``features`` tensor is the same.

    ``flatten=True`` builds the network as a lab report wrote it for its input size: every max
    pool kept, no adaptive average pool, the last feature map flattened as it is and the first
    FC layer sized from it; no stem switch (``stem`` is ignored, ``model.stem`` is ``None``;
    ``fc_width`` defaults to 4096). Five pools need inputs of at least 32x32.
    """

    cam_layer = "features"  # the map Grad-CAM explains (cnnbench.models.cam)

    def __init__(self, config: tuple[int | str, ...] = CONFIGS["D"], *, num_classes: int = 1000,
                 in_chans: int = 3, input_size: int | tuple[int, int] = 224, drop_rate: float = 0.0,
                 stem: str = "auto", bn: bool = False, fc_width: int | None = None,
                 flatten: bool = False) -> None:
        super().__init__()
        self.stem = None if flatten else resolve_stem(stem, input_size)
        small = self.stem == "small"
        if small and config[-1] == "M":
            config = config[:-1]
        layers: list[nn.Module] = []
        channels = in_chans
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
            if bn:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
        self.features = nn.Sequential(*layers)
        fc_width = fc_width or (512 if small else 4096)
        self.avgpool, fc_in = head_pool(self.features, in_chans, input_size,
                                        None if flatten else 1 if small else 7)
        self.classifier = nn.Sequential(
            nn.Linear(fc_in, fc_width), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            nn.Linear(fc_width, num_classes),
        )
        init_fan_out(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


vgg11 = register_model("vgg11", partial(VGG, CONFIGS["A"]), doc="VGG-11 (configuration A)")
vgg13 = register_model("vgg13", partial(VGG, CONFIGS["B"]), doc="VGG-13 (configuration B)")
vgg16 = register_model("vgg16", partial(VGG, CONFIGS["D"]), doc="VGG-16 (configuration D)")
vgg19 = register_model("vgg19", partial(VGG, CONFIGS["E"]), doc="VGG-19 (configuration E)")
vgg11_bn = register_model("vgg11_bn", partial(VGG, CONFIGS["A"], bn=True), doc="VGG-11 with BatchNorm")
vgg13_bn = register_model("vgg13_bn", partial(VGG, CONFIGS["B"], bn=True), doc="VGG-13 with BatchNorm")
vgg16_bn = register_model("vgg16_bn", partial(VGG, CONFIGS["D"], bn=True), doc="VGG-16 with BatchNorm")
vgg19_bn = register_model("vgg19_bn", partial(VGG, CONFIGS["E"], bn=True), doc="VGG-19 with BatchNorm")

# The lab reports' VGGs (../shared/seeds/: 000 = study mnist-classics, 003 = cifar10-tricks).
vgg16_classics = register_model(
    "vgg16_classics", partial(VGG, CONFIGS["D"]), study="mnist-classics",
    doc="VGG-16 of report ../shared/seeds/000_5fb1d57efed289c0.txt:389-433 (study mnist-classics; "
        "the report did not train it, :624-626): VGG_block(2,1,64), VGG_block(2,64,128), "
        "VGG_block(3,128,256), VGG_block(3,256,512), VGG_block(3,512,512) (3x3 convs with bias "
        "and ReLU, then MaxPool2d(2,2)), Flatten, Linear(512*7*7,4096), ReLU, Dropout, "
        "Linear(4096,4096), ReLU, Dropout, Linear(4096,classes): torchvision's VGG-16 without "
        "BatchNorm (its adaptive 7x7 pool is the identity at 224 px), the report's dropout 0.5 "
        "is drop_rate. 134,300,362 parameters at 1x224x224 (the study's size) and 10 classes; "
        "below 112 px the small stem")
vgg16_bn_tricks = register_model(
    "vgg16_bn_tricks", partial(VGG, CONFIGS["D"], bn=True, flatten=True), study="cifar10-tricks",
    pretrained_from=("vgg16_bn", ("features",)),
    doc="VGG-16 of report ../shared/seeds/003_12b1c3faa3378c9a.txt:237-334 (study cifar10-tricks): "
        "13 x [Conv2d(cin,cout,3,padding=1) (with bias), BatchNorm2d, ReLU] in VGG-16's "
        "configuration with all five MaxPool2d(2,2), then AvgPool2d(1,1) (a no-op, left out), "
        "Flatten (512 at 32 px), Linear(512,4096), ReLU, Dropout, Linear(4096,4096), ReLU, "
        "Dropout, Linear(4096,classes); the report's nn.Dropout() is 0.5, here drop_rate. "
        "33,646,666 parameters at 3x32x32 and 10 classes; larger inputs size the first FC layer "
        "from the feature map; five pools need at least 32x32 (28 px MNIST: --resize 32). Its "
        "features are torchvision's vgg16_bn's (the same 91 tensors, names and shapes), so "
        "--pretrained starts them from its ImageNet weights; the classifier stays fresh")
