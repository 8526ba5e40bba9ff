"""Small pieces every model family shares: input-size and stem handling, activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnbench.errors import UserError

__all__ = ["InputTooSmall", "to_hw", "resolve_stem", "make_activation", "flat_features",
           "make_divisible", "SMALL_INPUT_LIMIT", "shapes_only"]

# Inputs below this many pixels get the small-input stem when stem="auto": 112 px is half an
# ImageNet crop, where the ImageNet stems' 4x-32x early downsampling starts to leave too
# little of the image (a 56 px input ends a ResNet at 2x2, a 32 px one at 1x1).
SMALL_INPUT_LIMIT = 112

_STEMS = ("auto", "small", "imagenet")

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "relu6": nn.ReLU6,
}


class InputTooSmall(UserError):
    """A builder could not size a layer because the input leaves no feature map.

    :func:`cnnbench.models.create_model` turns it into a message naming the smallest input
    that works; calling a builder directly gives this shorter message."""


def to_hw(input_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``input_size`` as ``(H, W)``: an int means a square image."""
    if isinstance(input_size, int):
        hw = (input_size, input_size)
    else:
        hw = tuple(int(s) for s in input_size)
    if len(hw) != 2 or min(hw) < 1:
        raise UserError(f"input_size must be a positive int or (height, width), got {input_size!r}")
    return hw


def resolve_stem(stem: str, input_size: int | tuple[int, int]) -> str:
    """``"small"`` or ``"imagenet"``; ``"auto"`` picks ``"imagenet"`` for inputs of at least
    :data:`SMALL_INPUT_LIMIT` px on the shorter side, else ``"small"``."""
    if stem not in _STEMS:
        raise UserError(f"stem must be one of {', '.join(_STEMS)}, got {stem!r}")
    if stem != "auto":
        return stem
    return "imagenet" if min(to_hw(input_size)) >= SMALL_INPUT_LIMIT else "small"


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (relu, tanh, sigmoid, gelu, relu6)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise UserError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {name!r}") from None


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s weights are (the default device for a module without any)."""
    return next((t.device for t in (*module.parameters(), *module.buffers())),
                torch.get_default_device())


def _fills(func) -> bool:
    """An initialiser: ``Tensor.normal_``, ``Tensor.uniform_`` (what ``kaiming_normal_`` and
    the others of ``torch.nn.init`` call), or one of ``torch.nn.init``'s that PyTorch hands to a
    mode whole (``uniform_``, ``normal_``, ``kaiming_uniform_``, ``constant_``)."""
    return func in (torch.Tensor.normal_, torch.Tensor.uniform_) or (
        getattr(func, "__module__", None) == "torch.nn.init" and func.__name__.endswith("_"))


class shapes_only(TorchFunctionMode):  # noqa: N801  (used as a context manager)
    """Inside ``with shapes_only():``, BatchNorm on a meta tensor is what it is to shapes: a
    tensor like its input, once its channels match the layer's (else the RuntimeError
    BatchNorm raises); a random fill of a meta tensor (the weights' initialisation) is skipped,
    as there are no values to fill. BatchNorm's checks stay: the channels, and more than one
    value per channel in training. PyTorch computes both in Python reference code on the meta
    device: a meta BatchNorm is about 90% of a ResNet's meta forward pass (0.39 s of CPU for
    ResNet-152 at 224 px against 0.03 s). For the passes that need shapes only: building a
    model on the meta device and its input-size check, MAC counts (which count no BatchNorm)
    and layer summaries. Anything else, and real tensors, run as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _fills(func):
            tensor = args[0] if args else kwargs.get("tensor")  # torch.nn.init's: by keyword
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        if func is F.batch_norm and args and args[0].is_meta:
            x, names = args[0], ("running_mean", "running_var", "weight", "bias")
            given = {**dict(zip(names, args[1:5])), **{k: v for k, v in kwargs.items() if k in names}}
            channels = x.shape[1] if x.dim() > 1 else None
            for name, tensor in given.items():
                if tensor is not None and tensor.numel() != channels:
                    raise RuntimeError(f"{name} should contain {channels} elements not {tensor.numel()}")
            training = args[5] if len(args) > 5 else kwargs.get("training", False)
            if training and channels and x.numel() == channels:  # BatchNorm's own check
                raise ValueError(f"Expected more than 1 value per channel when training, got "
                                 f"input size {x.size()}")
            return torch.empty_like(x)
        return func(*args, **kwargs)


def flat_features(features: nn.Module, in_chans: int, input_size: int | tuple[int, int]) -> int:
    """Number of values ``features`` outputs per image, for layers sized from the input (e.g.
    LeNet's first FC layer): one image of zeros through ``features`` where its weights are (in
    evaluation mode, without gradients; the feature extractors sized this way are small), or on
    the meta device when the model is being built there."""
    hw = to_hw(input_size)
    device = module_device(features)
    was_training = features.training
    features.eval()  # a 1x1 map in training-mode BatchNorm would fail for batch 1
    try:
        # not on the meta device unless the weights are there: a ReLU or BatchNorm on meta
        # tensors imports torch._dynamo (a second of CPU at every run's start)
        with torch.no_grad():  # on the meta device: inside create_model's shapes_only pass
            out = features(torch.zeros(1, in_chans, *hw, device=device))
    except RuntimeError as exc:
        raise InputTooSmall(f"input {in_chans}x{hw[0]}x{hw[1]} is too small for this network: "
                            f"its feature map shrinks to nothing ({exc})") from None
    finally:
        features.train(was_training)
    if out[0].numel() == 0:
        raise InputTooSmall(f"input {in_chans}x{hw[0]}x{hw[1]} is too small for this network: "
                            f"its feature map shrinks to nothing")
    return out[0].numel()


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, never more than 10% below it.

    The channel rounding of the MobileNet reference implementations (TensorFlow slim), so that
    width multipliers give channel counts that map well onto hardware."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def init_fan_out(model: nn.Module) -> None:
    """torchvision's initialisation of VGG and MobileNet: He-normal convolutions (fan-out),
    BatchNorm at weight 1 and bias 0, linear layers N(0, 0.01), every bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def head_pool(features: nn.Module, in_chans: int, input_size: int | tuple[int, int],
              pooled: int | None) -> tuple[nn.Module, int]:
    """The pooling between ``features`` and the classifier, and the classifier's input width:
    an adaptive average pool to ``pooled x pooled`` (torchvision's AlexNet and VGG), or, with
    ``pooled=None``, the last feature map flattened as it is (the lab reports' layouts)."""
    pool = nn.Identity() if pooled is None else nn.AdaptiveAvgPool2d(pooled)
    return pool, flat_features(nn.Sequential(features, pool), in_chans, input_size)

