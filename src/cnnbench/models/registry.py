"""The model registry: every network cnnbench can build, by name.

Each family module of :mod:`cnnbench.models` (``resnet.py``, ...) registers its builders here
with :func:`register_model` when it is imported. The families (:data:`FAMILIES`) are imported
the first time a name is looked up (:func:`list_models`, :func:`resolve_model_name`), so
importing this module or :mod:`cnnbench.models` costs nothing until a model is asked for
(``cnnbench --help`` never imports torch's model code). Everything else
asks for a model by name through :func:`create_model`. Names are unique, also after
normalisation (case, ``-``, ``_`` and spaces are ignored when looking a name up), so
``"ResNet-18"`` finds ``resnet18``.

Every builder has the signature
``fn(*, num_classes=1000, in_chans=3, input_size=224, drop_rate=0.0, stem="auto", **family_kw)``
and :func:`create_model` checks, before any weight is allocated, that the requested input
size fits the network (a dry run on the ``meta`` device); one that does not raises a
:class:`~cnnbench.errors.UserError` naming the smallest size that works.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnbench.errors import UserError
from cnnbench.models.common import InputTooSmall, module_device, resolve_stem, shapes_only, to_hw

__all__ = ["ModelInfo", "register_model", "list_models", "model_info", "resolve_model_name",
           "create_model", "FAMILY_DEFAULTS"]

# A family name (as the reports and papers write it) stands for one documented variant.
# Exact model names win over these; the key is the normalised spelling (see _normalise).
FAMILY_DEFAULTS: dict[str, str] = {
    "lenet": "lenet5",            # LeCun et al. 1998 call the network LeNet-5
    "resnet": "resnet18",         # the reports' ResNet runs are ResNet-18 unless they say 34
    "vgg": "vgg16",               # "VGG" in the literature usually means configuration D
    "vggbn": "vgg16_bn",
    "mobilenet": "mobilenet_v1",  # "MobileNets" (Howard et al. 2017) is V1; V2 has its own name
    "inception": "googlenet",     # GoogLeNet is the Inception v1 network
    "inceptionv1": "googlenet",
}


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its ``name``, ``family`` (the module it lives in), the builder
    ``fn``, ``doc`` (the variant's one-line description, then the family docstring) and
    ``study``: for a network one of the lab reports trained, the study that reproduces that
    report (``"mnist-classics"``, ...), else ``None``. ``pretrained_from``: for a variant that
    is not torchvision's model but whose modules are, ``(torchvision model, (module, ...))``:
    ``--pretrained`` takes those modules from that model's ImageNet weights and leaves the
    rest fresh (``vgg16_bn_tricks``: ``("vgg16_bn", ("features",))``); else ``None``.
    ``cam_layer``: the module whose map Grad-CAM weighs (:mod:`cnnbench.models.cam`), the
    family class's ``cam_layer`` attribute unless the variant names another."""

    name: str
    family: str
    fn: Callable[..., nn.Module]
    doc: str
    study: str | None = None
    pretrained_from: tuple[str, tuple[str, ...]] | None = None
    cam_layer: str | None = None


# The family modules, imported (and so registered) on the first lookup.
FAMILIES = ("alexnet", "fastnet", "googlenet", "lenet", "mobilenet", "resnet", "vgg")

_REGISTRY: dict[str, ModelInfo] = {}
_NORMALISED: dict[str, str] = {}   # normalised spelling -> registered name
_COMMON_KEYWORDS = ("num_classes", "in_chans", "input_size", "drop_rate", "stem")


def _load_families() -> None:
    """Import every family module in :data:`FAMILIES` (each registers its models once)."""
    for family in FAMILIES:
        importlib.import_module(f"cnnbench.models.{family}")


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def _target(fn: Callable) -> Callable:
    """The function or class behind ``functools.partial`` wrappers."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def register_model(name: str | Callable | None = None, fn: Callable | None = None, *,
                   family: str | None = None, doc: str | None = None, study: str | None = None,
                   pretrained_from: tuple[str, tuple[str, ...]] | None = None,
                   cam_layer: str | None = None):
    """Register a model builder under a unique name.

    Three spellings, all registering ``fn`` and returning it unchanged::

        @register_model                      # name = the function's name
        def lenet5(*, num_classes=1000, ...): ...

        @register_model(family="lenet")      # keyword options, same naming
        def ...

        # a variant as one line over a family class or builder:
        resnet18 = register_model("resnet18", partial(ResNet, BasicBlock, (2, 2, 2, 2)),
                                  doc="ResNet-18 (He et al. 2016)")

    ``family`` defaults to the name of the module that defines the builder (``models/resnet.py``
    -> ``"resnet"``). ``doc`` is the variant's one-line description; the family docstring
    (of the function or class behind ``fn``) follows it in :attr:`ModelInfo.doc`. ``study``
    marks a lab report's network with the study that reproduces the report (``cnnbench models
    --reports`` lists these). ``pretrained_from=(model, modules)`` says that the variant's
    ``modules`` have exactly the names and shapes of torchvision's ``model``'s, so
    ``--pretrained`` loads them from that model's ImageNet weights (:attr:`ModelInfo.pretrained_from`).
    ``cam_layer`` names the module Grad-CAM explains (:attr:`ModelInfo.cam_layer`); by default
    the ``cam_layer`` attribute of the family class (``ResNet.cam_layer = "layer4"``).

    Raises ``ValueError`` if the name, or a spelling that normalises to the same key, is
    already registered: two builders must never compete for one name.
    """
    if callable(name):                       # bare @register_model
        return register_model(None, name, family=family, doc=doc, study=study,
                              pretrained_from=pretrained_from, cam_layer=cam_layer)
    if fn is None:                           # @register_model(...) with options
        return lambda f: register_model(name, f, family=family, doc=doc, study=study,
                                        pretrained_from=pretrained_from, cam_layer=cam_layer)

    target = _target(fn)
    model_name = name or target.__name__
    key = _normalise(model_name)
    if model_name in _REGISTRY or key in _NORMALISED:
        existing = _REGISTRY.get(model_name) or _REGISTRY[_NORMALISED[key]]
        raise ValueError(f"model name {model_name!r} is already registered "
                         f"(as {existing.name!r} by {existing.family}); pick another name")
    fam = family or target.__module__.rsplit(".", 1)[-1]
    parts = [doc or "", inspect.getdoc(target) or ""]
    if pretrained_from is not None:
        source, modules = pretrained_from
        pretrained_from = (str(source), tuple(str(m) for m in modules))
    info = ModelInfo(name=model_name, family=fam, fn=fn, doc="\n\n".join(p for p in parts if p),
                     study=study, pretrained_from=pretrained_from,
                     cam_layer=cam_layer or getattr(target, "cam_layer", None))
    _REGISTRY[model_name] = info
    _NORMALISED[key] = model_name
    return fn


def _natural_key(name: str) -> tuple[list[str | int], str]:
    """Sort key that compares digit runs as numbers: ``resnet18`` before ``resnet101``."""
    parts = re.split(r"(\d+)", name.lower())  # text at even, digits at odd positions
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], name


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the ``fnmatch`` ``pattern`` (case-insensitive), in
    natural order (numbers by value: ``resnet18``, ``resnet34``, ..., ``resnet101``)."""
    _load_families()
    pattern = pattern.lower()
    return sorted((n for n in _REGISTRY if fnmatch.fnmatchcase(n.lower(), pattern)), key=_natural_key)


def resolve_model_name(name: str) -> str:
    """The registered name for ``name``: exact, then case/punctuation-insensitive
    (``"ResNet-18"`` -> ``"resnet18"``), then a family name (``"ResNet"`` -> ``"resnet18"``,
    see :data:`FAMILY_DEFAULTS`). Unknown names raise :class:`UserError` with close matches."""
    _load_families()
    if name in _REGISTRY:
        return name
    key = _normalise(name)
    if key in _NORMALISED:
        return _NORMALISED[key]
    if key in FAMILY_DEFAULTS:
        return FAMILY_DEFAULTS[key]
    spellings = {**_NORMALISED, **FAMILY_DEFAULTS}
    close = difflib.get_close_matches(key, list(spellings), n=4, cutoff=0.6)
    suggestions = list(dict.fromkeys(spellings[c] for c in close))  # closest first, no repeats
    hint = (f"did you mean {', '.join(suggestions)}?" if suggestions
            else "run `cnnbench models` for the list")
    raise UserError(f"unknown model {name!r}; {hint}")


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a model (any spelling :func:`resolve_model_name` accepts)."""
    return _REGISTRY[resolve_model_name(name)]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3,
                 input_size: int | tuple[int, int] = 224, drop_rate: float = 0.0,
                 **kwargs) -> nn.Module:
    """Build model ``name`` for ``in_chans`` x ``input_size`` images and ``num_classes`` classes.

    The defaults are torchvision's (1000 classes, 3 x 224 x 224, the ImageNet stem), so
    ``create_model("resnet18")`` is torchvision's ResNet-18; for MNIST give ``num_classes=10,
    in_chans=1, input_size=28`` (the small-input stem is then chosen), or take them from a
    dataset: ``cnnbench.data.get_spec("mnist")`` has ``num_classes``, ``channels`` and
    ``image_size``.

    ``kwargs`` are the common ``stem`` and the family's own keywords (``width_mult``, ``bn``,
    ``aux_logits``, ...; see ``cnnbench models --summary NAME`` or the family docstring).
    The model is checked against the input size as it is built (a batch of two images of zeros,
    :func:`_built_and_checked`), so an input that is too small raises :class:`UserError` (with
    the smallest size that works) instead of a shape error at the first batch. Build inside
    ``with torch.device("meta"):`` to get a weightless model for counting parameters and MACs
    (checked on the meta device).

    The returned model carries ``model.model_name`` (the registered name) and ``model.stem``
    (``"small"``, ``"imagenet"`` or ``None`` for models without a stem switch).
    """
    info = model_info(name)
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                  drop_rate=drop_rate, **kwargs)
    _check_keywords(info, kwargs)
    if torch.get_default_device().type == "meta":
        model = _check_input_fits(info, kwargs)  # the checked model is the one wanted
    else:
        model = _built_and_checked(info, kwargs)
    model.model_name = info.name
    if not hasattr(model, "stem"):
        model.stem = None
    return model


def create_model_for(config, spec, input_size: tuple[int, int]) -> nn.Module:
    """The model a training run's ``config`` names (``model``, ``dropout``, ``stem``,
    ``model_kwargs``: a :class:`cnnbench.config.TrainConfig`) for ``spec``'s images (a
    :class:`cnnbench.data.DatasetSpec`: ``num_classes``, ``channels``) at ``input_size`` (H, W):
    what training, evaluation, prediction, export and the study estimates all build."""
    h, w = input_size
    taken = sorted(set(config.model_kwargs) & set(_COMMON_KEYWORDS))
    if taken:  # set by the run's own options: given twice, create_model would get two values
        flags = {"stem": "--stem", "drop_rate": "--dropout", "input_size": "--resize"}
        raise UserError(f"--model-kwargs cannot set {', '.join(taken)}: "
                        + "; ".join(f"use {flags[k]}" if k in flags else f"{k} comes from the dataset"
                                    for k in taken))
    return create_model(config.model, num_classes=spec.num_classes, in_chans=spec.channels,
                        input_size=h if h == w else (h, w), drop_rate=config.dropout,
                        stem=config.stem, **config.model_kwargs)


def _check_keywords(info: ModelInfo, kwargs: dict) -> None:
    params = inspect.signature(info.fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        own = [n for n in accepted if n not in _COMMON_KEYWORDS] or ["none"]
        raise UserError(f"model {info.name} has no option {', '.join(unknown)}; its own options "
                        f"are: {', '.join(own)} (plus {', '.join(_COMMON_KEYWORDS)})")


def _built_and_checked(info: ModelInfo, kwargs: dict) -> nn.Module:
    """The model, built, and a batch of two images of zeros run through it in training mode
    (auxiliary heads run too) without gradients, its random streams and buffers (BatchNorm
    statistics) left as they were: the weights and the random state afterwards are those of a
    plain build. Not on the meta device, where a ReLU or BatchNorm runs PyTorch's Python
    reference code, which imports torch._dynamo: a second of CPU at the start of every run. An
    input the model does not take goes to :func:`_check_input_fits`, which names the smallest
    size that works."""
    resolve_stem(kwargs.get("stem", "auto"), to_hw(kwargs["input_size"]))  # validates the value first
    try:
        model = info.fn(**kwargs)
        _run_zeros(model, kwargs["in_chans"], to_hw(kwargs["input_size"]))
    except (InputTooSmall, RuntimeError):
        _check_input_fits(info, kwargs)  # raises UserError where the input is too small
        raise  # it fits on the meta device: the failure is not about the size
    return model


def _run_zeros(model: nn.Module, in_chans: int, hw: tuple[int, int]) -> None:
    device = module_device(model)
    saved = [b.detach().clone() for b in model.buffers()]
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model(torch.zeros(2, in_chans, *hw, device=device))
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved):
                buffer.copy_(value)
        model.train(was_training)


def _dry_run(info: ModelInfo, kwargs: dict) -> tuple[Exception | None, nn.Module | None]:
    """Build the model on the meta device (no memory, no compute) and run a batch of 2 through
    it in training mode, so auxiliary heads run too. Returns (error or None, model or None)."""
    try:
        with torch.device("meta"), shapes_only():
            model = info.fn(**kwargs)
            model(torch.empty(2, kwargs["in_chans"], *to_hw(kwargs["input_size"])))
    except (InputTooSmall, RuntimeError) as exc:  # InputTooSmall: a layer sized from the input
        return exc, None
    return None, model


def _check_input_fits(info: ModelInfo, kwargs: dict) -> nn.Module:
    """The model built on the meta device if ``kwargs["input_size"]`` fits it; else raise
    :class:`UserError` naming the smallest square input that does."""
    hw = to_hw(kwargs["input_size"])
    stem = resolve_stem(kwargs.get("stem", "auto"), hw)  # validates the value first
    error, model = _dry_run(info, kwargs)
    if error is None:
        return model
    # Find the smallest square input that works with the same stem. If none does, the
    # failure is not about size, and the original error is the honest report.
    fixed = dict(kwargs, stem=stem)
    hi = 2 * max(hw)
    while True:
        failed, working = _dry_run(info, dict(fixed, input_size=hi))
        if not failed:
            has_stem = getattr(working, "stem", None) is not None
            break
        if hi >= 4096:
            raise error
        hi *= 2
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _dry_run(info, dict(fixed, input_size=mid))[0] is None:
            hi = mid
        else:
            lo = mid + 1
    where = f"{info.name} with the {stem} stem" if has_stem else info.name
    hint = f"pass --resize {lo} or larger"
    if has_stem:
        other = "imagenet" if stem == "small" else "small"
        if _dry_run(info, dict(kwargs, stem=other))[0] is None:
            hint += f", or use the {other} stem (--stem {other})"
    raise UserError(f"input {kwargs['in_chans']}x{hw[0]}x{hw[1]} is too small for {where} (its "
                    f"feature map shrinks to nothing); the smallest that works is {lo}x{lo}: {hint}")
