"""Fine-tuning and transfer learning: start from other weights, freeze, unfreeze, split LRs.

::

    report = load_init_weights(model, "resnet18-f37072fd.pth", dataset="cifar10")
    print(report.text())                  # one line for the log; report.to_dict() for summary.json
    path = pretrained_weights_path("resnet18")   # torchvision's ImageNet file (cache or download)
    groups = split_param_groups(groups, model, lr=0.01, head_lr=0.1)   # before freezing
    freeze(model, "backbone")             # the head trains, the rest is fixed (BatchNorm too)
    unfreeze(model)                       # or, per epoch: apply_freeze_schedule(...)

Where the weights come from (:func:`read_weights`)
--------------------------------------------------
A cnnbench checkpoint (``last.ckpt`` / ``best.ckpt``: its ``model`` weights; its ``config`` says
which model and dataset it was trained on), a run directory (its ``best.ckpt``), or a plain
``state_dict`` file such as torchvision's ``resnet18-f37072fd.pth`` (also ``{"state_dict": ..}``
and ``{"model": ..}`` wrappers; ``module.`` and ``_orig_mod.`` prefixes are stripped). Files are
read with ``torch.load(weights_only=True)``: loading weights never runs code.

What is loaded (:func:`load_init_weights`)
------------------------------------------
Tensors are matched by name. The models are torchvision's at the ImageNet configuration
(3 x 224 x 224, 1000 classes, ImageNet stem), so a torchvision file loads completely there and
the model computes exactly what torchvision's does. Otherwise each tensor of the model is:

* **loaded**: same name and shape in the file;
* **replaced** (left at its fresh initialisation): a tensor of the classifier head (see
  :func:`head_module_names`) when the class count differs, or when ``head="reset"``, or, with
  ``head="auto"``, when the file is a cnnbench checkpoint of another dataset (same number of
  classes, different classes: Fashion-MNIST -> MNIST);
* **adapted**: the first convolution's kernels when the input channels differ. RGB kernels on
  1-channel data are summed over the input channels, so the layer's response to a gray image
  is unchanged: ``conv_rgb([g, g, g]) == conv_gray(g)``. Gray kernels on c-channel data are
  repeated and divided by c (the same identity the other way round);
* **new** (left at its fresh initialisation, with the reason): the first convolution when its
  kernel size differs (the small-input stem's 3x3 against the ImageNet stem's 7x7:
  ResNet ``conv1.weight``, GoogLeNet ``conv1.conv.weight``), fully connected layers whose shape
  depends on the input size, the stem or a width option (VGG/AlexNet ``classifier.0`` and
  ``classifier.3`` with the small stem, LeNet ``c5``), and auxiliary classifiers the file lacks.

Tensors in the file under a top-level module the model lacks (torchvision GoogLeNet's
``aux1``/``aux2`` when ``aux_logits`` is off) are **ignored** and listed. Anything else (a
tensor of the model missing from the file, a file tensor under one of the model's modules
that the model lacks, a convolution or BatchNorm of another shape) means the file is for
another architecture or other options: :class:`UserError`, one line naming a few of the keys
and the model the file seems to be for.

The head, freezing and BatchNorm (:func:`freeze`)
-------------------------------------------------
The **head** is found generically: the last ``nn.Linear`` (in registration order) with
``num_classes`` outputs, every module registered after it, and auxiliary classifiers (top-level
children that hold another ``nn.Linear`` with ``num_classes`` outputs, e.g. GoogLeNet's
``aux1``/``aux2``). Everything else is the **backbone**. ``freeze(model, "backbone")`` sets
``requires_grad=False`` on the backbone's parameters and puts its BatchNorm layers in eval mode
for good: ``model.train()`` (which the engine calls every epoch) leaves them in eval mode, so
their running statistics stay those of the loaded weights and they normalise with them. This
is done with a per-instance ``train`` method on each frozen BatchNorm layer (deep copies keep
it; ``unfreeze`` removes it); :func:`set_frozen_bn_eval` re-applies it explicitly if a caller
toggles ``.training`` by hand.

Frozen parameters stay in the optimizer: build it **before** freezing (or with
:func:`param_groups` / :func:`split_param_groups`, which keep them). PyTorch's optimizers skip
a parameter whose ``.grad`` is ``None`` (no update, no weight decay, no momentum), so freezing
costs nothing, unfreezing needs no new optimizer, and the optimizer's ``state_dict`` has the
same layout in every epoch (exact resume).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import socket
import types
import urllib.error
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench.errors import UserError

__all__ = ["LoadReport", "load_init_weights", "read_weights", "pretrained_weights_path",
           "pretrained_models", "head_module_names", "head_parameter_names", "first_conv_name",
           "freeze", "unfreeze", "is_frozen", "set_frozen_bn_eval", "apply_freeze_schedule",
           "split_param_groups", "param_groups", "check_options", "HEAD_CHOICES"]

HEAD_CHOICES = ("auto", "keep", "reset")
CHECKPOINT_FORMAT = "cnnbench-checkpoint"   # cnnbench.checkpoint.FORMAT
_PREFIXES = ("module.", "_orig_mod.")
_FROZEN_ATTR = "_cnnbench_frozen"           # on the model: names of the parameters we froze
_BN_FLAG = "_cnnbench_frozen_bn"            # on a BatchNorm layer frozen in eval mode
PROBE_TIMEOUT_S = 2.0                       # connectivity check before a download
DOWNLOAD_TIMEOUT_S = 60.0                   # socket timeout while downloading (no hang)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module that owns the weights (``torch.compile`` wraps it as ``_orig_mod``)."""
    return getattr(model, "_orig_mod", model)


def _model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", None) or type(model).__name__


# --------------------------------------------------------------------------- the head

def _classifier_linear(model: nn.Module, num_classes: int | None) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if num_classes is not None:
        linears = [(n, m) for n, m in linears if m.out_features == num_classes]
    if not linears:
        what = f"an nn.Linear with {num_classes} outputs" if num_classes else "an nn.Linear"
        raise UserError(f"cannot find the classifier head of {_model_name(model)}: it has no "
                        f"{what}; freezing and head learning rates need one")
    return linears[-1]


def head_module_names(model: nn.Module, num_classes: int | None = None) -> list[str]:
    """Names of the head's modules: the classifier (the last ``nn.Linear`` with ``num_classes``
    outputs; with ``num_classes=None`` the last ``nn.Linear``), every module registered after
    it, and the auxiliary classifiers (top-level children holding another ``nn.Linear`` with
    that many outputs). ``resnet18`` -> ``["fc"]``; ``vgg16`` -> ``["classifier.6"]``;
    GoogLeNet with ``aux_logits`` -> ``["aux1", "aux2", "fc"]``."""
    model = _unwrap(model)
    head_name, head = _classifier_linear(model, num_classes)
    classes = head.out_features
    modules = list(model.named_modules())
    index = next(i for i, (n, _) in enumerate(modules) if n == head_name)
    names = [head_name] + [n for n, _ in modules[index + 1:]]
    for child_name, child in model.named_children():
        if head_name == child_name or head_name.startswith(child_name + "."):
            continue
        if any(isinstance(m, nn.Linear) and m.out_features == classes for m in child.modules()):
            names.append(child_name)
    return _outermost(names)


def _outermost(names: Iterable[str]) -> list[str]:
    """``names`` without those inside another one, in order of first appearance."""
    out: list[str] = []
    for name in names:
        if not any(name == o or name.startswith(o + ".") for o in out):
            out = [o for o in out if not o.startswith(name + ".")] + [name]
    return out


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def head_parameter_names(model: nn.Module, num_classes: int | None = None) -> list[str]:
    """Names of the head's parameters (see :func:`head_module_names`)."""
    heads = head_module_names(model, num_classes)
    return [n for n, _ in _unwrap(model).named_parameters() if _under(n, heads)]


def first_conv_name(model: nn.Module, in_chans: int | None = None) -> str | None:
    """Name of the first ``nn.Conv2d`` (registration order), with ``in_chans`` inputs if given."""
    for name, module in _unwrap(model).named_modules():
        if isinstance(module, nn.Conv2d) and (in_chans is None or module.in_channels == in_chans):
            return name
    return None


# --------------------------------------------------------------------------- reading weights

@dataclass
class _Source:
    weights: dict[str, torch.Tensor]
    where: str
    kind: str                      # "cnnbench checkpoint" | "state_dict"
    model: str | None = None       # for a cnnbench checkpoint: its config's model
    dataset: str | None = None     # ... and dataset


def read_weights(source: str | Path | Mapping) -> _Source:
    """The tensors of a cnnbench checkpoint, a run directory (its ``best.ckpt``), a
    ``state_dict`` file or an in-memory mapping of either; one-line :class:`UserError` if none."""
    if isinstance(source, Mapping):
        state, where = source, "the given state_dict"
    else:
        from cnnbench.checkpoint import load_tensor_file

        path = Path(source)
        if path.is_dir():
            if not (path / "best.ckpt").exists():
                raise UserError(f"init: {path} is a directory without best.ckpt; give a run "
                                f"directory, a checkpoint or a state_dict file")
            path = path / "best.ckpt"
        state, where = load_tensor_file(path), str(path)
    kind, model_name, dataset = "state_dict", None, None
    if isinstance(state, Mapping) and (state.get("format") == CHECKPOINT_FORMAT or (
            isinstance(state.get("model"), Mapping) and isinstance(state.get("config"), Mapping))):
        config = state.get("config") if isinstance(state.get("config"), Mapping) else {}
        kind = "cnnbench checkpoint"
        model_name, dataset = config.get("model"), config.get("dataset")
        state = state.get("model")
    elif isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if (not isinstance(state, Mapping) or not state
            or not all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UserError(f"init: {where} holds no state_dict (a mapping of names to tensors); give "
                        f"a cnnbench checkpoint, a run directory or a torchvision .pth file")
    weights = {}
    for name, tensor in state.items():
        name = str(name)
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        weights[name] = tensor
    return _Source(weights, where, kind, model_name, dataset)


# --------------------------------------------------------------------------- the report

def _shape(t: torch.Tensor | torch.Size) -> str:
    return "x".join(str(s) for s in (t.shape if isinstance(t, torch.Tensor) else t)) or "scalar"


def _compact(names: list[str], limit: int = 6) -> str:
    """``["fc.weight", "fc.bias"]`` -> ``"fc.{weight,bias}"``; long lists end in "and N more"."""
    groups: dict[str, list[str]] = {}
    for name in names:
        module, _, leaf = name.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    items = [(f"{m}.{{{','.join(ls)}}}" if len(ls) > 1 else f"{m}.{ls[0]}") if m else ",".join(ls)
             for m, ls in groups.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


@dataclass
class LoadReport:
    """What :func:`load_init_weights` did with each tensor of the model.

    ``loaded``: names taken from the file unchanged; ``replaced``, ``adapted``, ``new``: name ->
    reason; ``ignored``: file tensors the model has no place for; ``total``: the model's tensors.
    """

    source: str
    kind: str
    source_model: str | None = None
    source_dataset: str | None = None
    model: str = ""
    loaded: list[str] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)
    adapted: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    total: int = 0

    def _parts(self, mapping: dict[str, str]) -> str:
        by_reason: dict[str, list[str]] = {}
        for name, reason in mapping.items():
            by_reason.setdefault(reason, []).append(name)
        return "; ".join(f"{_compact(names)} ({reason})" for reason, names in by_reason.items())

    def text(self) -> str:
        """One line for the log and the summary."""
        origin = f"{self.kind}"
        if self.source_model:
            origin += f" of {self.source_model}" + (f" on {self.source_dataset}"
                                                    if self.source_dataset else "")
        line = (f"init from {self.source} ({origin}): {len(self.loaded)} of {self.total} tensors "
                f"loaded")
        for label, mapping in (("replaced", self.replaced), ("adapted", self.adapted),
                               ("new", self.new)):
            if mapping:
                line += f"; {label} {self._parts(mapping)}"
        if self.ignored:
            line += (f"; ignored {len(self.ignored)} file tensors not in the model "
                     f"({_compact(self.ignored, 3)})")
        return line

    __str__ = text

    def to_dict(self) -> dict[str, Any]:
        """For ``summary.json``: counts, every tensor that was not loaded unchanged, the text."""
        return {"source": self.source, "kind": self.kind, "source_model": self.source_model,
                "source_dataset": self.source_dataset, "loaded": len(self.loaded),
                "total": self.total, "replaced": dict(self.replaced),
                "adapted": dict(self.adapted), "new": dict(self.new),
                "ignored": list(self.ignored), "text": self.text()}


# --------------------------------------------------------------------------- loading

def _owner(model: nn.Module, key: str) -> nn.Module | None:
    module_name = key.rpartition(".")[0]
    try:
        return model.get_submodule(module_name) if module_name else model
    except AttributeError:
        return None


def load_init_weights(model: nn.Module, source: str | Path | Mapping, *,
                      num_classes: int | None = None, in_chans: int | None = None,
                      dataset: str | None = None, head: str = "auto") -> LoadReport:
    """Load the weights of ``source`` into ``model`` as far as they fit; see the module
    docstring for what is loaded, replaced, adapted or left new, and :func:`read_weights` for
    the sources. Returns the :class:`LoadReport`.

    Args:
        num_classes: the model's class count (default: the outputs of its last ``nn.Linear``).
        in_chans: the model's input channels (default: those of its first convolution).
        dataset: the run's dataset; with ``head="auto"`` a cnnbench checkpoint of another
            dataset gets a fresh head even when the class count is the same.
        head: ``auto``, ``keep`` (keep the file's head when its shape fits) or ``reset``.

    Raises:
        UserError: unreadable file, or weights of another architecture (one line).
    """
    if head not in HEAD_CHOICES:
        raise UserError(f"init head must be one of {', '.join(HEAD_CHOICES)}, got {head!r}")
    model = _unwrap(model)
    src = read_weights(source)
    weights = src.weights
    own = model.state_dict()
    if num_classes is None:
        num_classes = _classifier_linear(model, None)[1].out_features
    heads = head_module_names(model, num_classes)
    conv = first_conv_name(model, in_chans)
    conv_weight = f"{conv}.weight" if conv else None
    report = LoadReport(source=src.where, kind=src.kind, source_model=src.model,
                        source_dataset=src.dataset, model=_model_name(model), total=len(own))

    reset_reason = None
    if head == "reset":
        reset_reason = "head reset on request"
    elif head == "auto" and dataset and src.dataset and str(src.dataset) != str(dataset):
        reset_reason = f"classifier head: {src.dataset} classes are not {dataset}'s"
    file_tops = {k.split(".")[0] for k in weights}
    own_tops = {k.split(".")[0] for k in own}

    # a head layer with any tensor of another shape is replaced as a whole (weight and bias)
    head_reasons: dict[str, str] = {}
    for key, dst in own.items():
        t = weights.get(key)
        if t is not None and _under(key, heads) and t.shape != dst.shape:
            layer = key.rpartition(".")[0]
            head_reasons[layer] = (
                f"classifier head: {t.shape[0]} -> {dst.shape[0]} classes"
                if t.dim() >= 1 and dst.dim() >= 1 and t.shape[0] != dst.shape[0]
                else f"classifier head: {_shape(t)} in the file, {_shape(dst)} here")

    state = dict(own)
    missing: list[str] = []
    mismatched: list[str] = []
    for key, dst in own.items():
        in_head = _under(key, heads)
        layer_reason = head_reasons.get(key.rpartition(".")[0]) if in_head else None
        if key not in weights:
            if in_head and key.split(".")[0] not in file_tops:
                report.new[key] = "auxiliary classifier not in the file"
            else:
                missing.append(key)
            continue
        t = weights[key]
        if in_head and (reset_reason or layer_reason):
            report.replaced[key] = layer_reason or reset_reason
            continue
        if t.shape == dst.shape:
            state[key] = t.to(dst.dtype)
            report.loaded.append(key)
        elif key == conv_weight and t.dim() == 4 and t.shape[0] == dst.shape[0]:
            c_file, c_own = t.shape[1], dst.shape[1]
            if t.shape[2:] != dst.shape[2:]:
                report.new[key] = (f"stem: {t.shape[2]}x{t.shape[3]} kernel in the file, "
                                   f"{dst.shape[2]}x{dst.shape[3]} here")
            elif c_own == 1:
                state[key] = t.to(dst.dtype).sum(dim=1, keepdim=True)
                report.adapted[key] = f"{c_file}-channel kernels summed to 1 channel"
            elif c_file == 1:
                state[key] = t.to(dst.dtype).repeat(1, c_own, 1, 1) / c_own
                report.adapted[key] = f"1-channel kernels repeated over {c_own} channels / {c_own}"
            else:
                report.new[key] = f"input channels: {c_file} in the file, {c_own} here"
        elif isinstance(_owner(model, key), nn.Linear):
            report.new[key] = "fully connected layer sized by the input size, stem or width"
        else:
            mismatched.append(f"{key} {_shape(t)} vs {_shape(dst)}")
    unexpected = [k for k in weights if k not in own and k.split(".")[0] in own_tops]
    report.ignored = [k for k in weights if k not in own and k.split(".")[0] not in own_tops]
    if missing or unexpected or mismatched or not report.loaded:
        raise UserError(_mismatch_message(model, src, missing, unexpected, mismatched))
    model.load_state_dict(state, strict=True)
    return report


def _mismatch_message(model: nn.Module, src: _Source, missing: list[str], unexpected: list[str],
                      mismatched: list[str]) -> str:
    def show(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    name = _model_name(model)
    parts = []
    if missing:
        parts.append(f"missing in the file: {show(missing)}")
    if unexpected:
        parts.append(f"not in the model: {show(unexpected)}")
    if mismatched:
        parts.append(f"other shape (file vs model): {show(mismatched)}")
    if not parts:
        parts.append("no tensor has a name and shape the model has")
    if src.kind == "cnnbench checkpoint" and src.model:
        whose = f"the file is a cnnbench checkpoint of {src.model}" + (
            f" on {src.dataset}" if src.dataset else "")
        hint = f"use --model {src.model}" if src.model != name else \
            "use the same model options (model_kwargs, stem) as that run"
    else:
        guess, score = guess_architecture(src.weights)
        if guess is None:
            whose, hint = "the file matches no cnnbench model", "give weights for " + name
        elif guess == name:
            whose = f"the file is for {name} built with other options"
            hint = "match its channels, width and model_kwargs"
        else:
            whose = (f"the file seems to be for {guess}" if score >= 0.9
                     else f"the file is closest to {guess} ({score:.0%} of its tensors)")
            hint = f"use --model {guess} or weights for {name}"
    return f"init: {src.where} does not fit {name} ({'; '.join(parts)}); {whose}: {hint}"


@functools.lru_cache(maxsize=1)
def _reference_keys() -> tuple[tuple[str, frozenset, dict], ...]:
    """(model name, key names, key -> shape) of every registered model at the ImageNet
    configuration, built on the meta device (no memory, ~1 s for the zoo)."""
    from cnnbench.models import list_models, model_info

    out = []
    for name in list_models():
        fn = model_info(name).fn
        variants: list[dict] = [{}]
        if "aux_logits" in inspect.signature(fn).parameters:
            variants.append({"aux_logits": True})
        for extra in variants:
            try:
                with torch.device("meta"):
                    m = fn(num_classes=1000, in_chans=3, input_size=224, stem="imagenet", **extra)
            except Exception:  # noqa: BLE001 - a model that cannot be built is no candidate
                continue
            shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
            out.append((name, frozenset(shapes), shapes))
    return tuple(out)


def guess_architecture(weights: Mapping[str, torch.Tensor]) -> tuple[str | None, float]:
    """The registered model whose ``state_dict`` names (then shapes) best match ``weights``,
    and the share of names in common (Jaccard index); ``(None, 0.0)`` below one half."""
    names = frozenset(weights)
    best, best_score = None, (0.0, 0.0)
    for model, keys, shapes in _reference_keys():
        common = names & keys
        jaccard = len(common) / max(1, len(names | keys))
        same_shape = sum(tuple(weights[k].shape) == shapes[k] for k in common) / max(1, len(names))
        if (jaccard, same_shape) > best_score:
            best, best_score = model, (jaccard, same_shape)
    if best_score[0] < 0.5:
        return None, best_score[0]
    return best, best_score[0]


# --------------------------------------------------------------------------- --pretrained

def pretrained_models() -> list[str]:
    """cnnbench models for which torchvision has ImageNet weights (same names and layouts)."""
    import torchvision.models as tvm
    from cnnbench.models import list_models

    tv = set(tvm.list_models())
    out = []
    for name in list_models():
        if name in tv:
            try:
                tvm.get_model_weights(name)
            except (ValueError, KeyError):
                continue
            out.append(name)
    return out


def _network_available(url: str, timeout: float) -> bool:
    from cnnbench.data.sources import network_available

    return network_available(url, timeout)


def pretrained_weights_path(model_name: str, *, download: bool = True,
                            timeout: float = PROBE_TIMEOUT_S) -> Path:
    """The file of torchvision's default ImageNet weights for ``model_name``, in the torch hub
    cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``).

    A file already there is used as is. Otherwise it is downloaded (hash-checked, as torchvision
    does) when ``download`` and the host answers a TCP probe within ``timeout`` seconds
    (``$CNNBENCH_OFFLINE=1``: no probe, offline). Offline, or for a model torchvision has no
    weights for, a one-line :class:`UserError` says where to put the file and that
    ``--init PATH`` takes a downloaded file.
    """
    import torchvision.models as tvm
    from cnnbench.models import resolve_model_name

    name = resolve_model_name(model_name)
    try:
        weights = tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise UserError(f"--pretrained: torchvision has no ImageNet weights for {name}; it has "
                        f"them for {', '.join(pretrained_models())} (or pass --init PATH with "
                        f"weights of your own)") from None
    url = weights.url
    filename = url.rsplit("/", 1)[-1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / filename
    if path.is_file():
        return path
    if not download or not _network_available(url, timeout):
        raise UserError(f"--pretrained: {filename} (torchvision's ImageNet weights for {name}) is "
                        f"not in {folder} and {url} cannot be reached; download it elsewhere and "
                        f"put it there, or pass --init PATH with the downloaded file")
    return _download(url, path)


def _download(url: str, path: Path) -> Path:
    """``torch.hub.download_url_to_file`` (temp file, then rename; sha256 prefix checked),
    with a socket timeout so that a stalled connection fails instead of hanging."""
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(path),
                                       hash_prefix=match.group(1) if match else None)
    except (OSError, RuntimeError, urllib.error.URLError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--pretrained: downloading {url} failed ({first}); put the file into "
                        f"{path.parent} by hand, or pass --init PATH with a downloaded file"
                        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


# --------------------------------------------------------------------------- freezing

def _frozen_bn_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` of a frozen BatchNorm layer: always eval mode (running stats fixed)."""
    return nn.Module.train(self, False)


def _freeze_prefixes(model: nn.Module, what: str) -> list[str]:
    """The module names of a comma-separated ``what`` (checked against the model)."""
    prefixes = [p.strip() for p in what.split(",") if p.strip()]
    known = {n for n, _ in model.named_modules()}
    unknown = [p for p in prefixes if p not in known]
    if unknown:
        tops = ", ".join(n for n, _ in model.named_children())
        raise UserError(f"freeze: {_model_name(model)} has no module {', '.join(unknown)}; give "
                        f"backbone, none, or module names such as {tops}")
    return prefixes


def freeze(model: nn.Module, what: str = "backbone", *,
           num_classes: int | None = None) -> list[str]:
    """Freeze part of ``model``; return the names of the parameters frozen by this call.

    ``what``: ``"backbone"`` (everything but the head, see :func:`head_module_names`),
    ``"none"``, or comma-separated module names (``"conv1,bn1,layer1"``). Frozen parameters get
    ``requires_grad=False``; frozen BatchNorm layers stay in eval mode through ``model.train()``.
    Idempotent; :func:`unfreeze` undoes it.
    """
    model = _unwrap(model)
    what = (what or "none").strip()
    if what == "none":
        return []
    if what == "backbone":
        heads = head_module_names(model, num_classes)
        def selected(name: str) -> bool:
            return not _under(name, heads)
    else:
        prefixes = _freeze_prefixes(model, what)
        def selected(name: str) -> bool:
            return _under(name, prefixes)
    done = set(getattr(model, _FROZEN_ATTR, ()))
    newly = []
    for name, p in model.named_parameters():
        if selected(name) and p.requires_grad:
            p.requires_grad_(False)
            newly.append(name)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and name and selected(name):
            if not getattr(module, _BN_FLAG, False):
                setattr(module, _BN_FLAG, True)
                module.train = types.MethodType(_frozen_bn_train, module)
            nn.Module.train(module, False)
    setattr(model, _FROZEN_ATTR, sorted(done | set(newly)))
    return newly


def unfreeze(model: nn.Module) -> list[str]:
    """Undo :func:`freeze`: its parameters train again and its BatchNorm layers follow
    ``model.train()``/``eval()`` again (set to the model's current mode). Returns the names."""
    model = _unwrap(model)
    names = list(getattr(model, _FROZEN_ATTR, ()))
    params = dict(model.named_parameters())
    for name in names:
        if name in params:
            params[name].requires_grad_(True)
    for module in model.modules():
        if getattr(module, _BN_FLAG, False):
            del module.train            # the instance override; the class method is back
            delattr(module, _BN_FLAG)
            nn.Module.train(module, model.training)
    setattr(model, _FROZEN_ATTR, [])
    return names


def is_frozen(model: nn.Module) -> bool:
    """Whether :func:`freeze` froze something that has not been unfrozen."""
    return bool(getattr(_unwrap(model), _FROZEN_ATTR, ()))


def set_frozen_bn_eval(model: nn.Module) -> int:
    """Put every frozen BatchNorm layer back in eval mode; return how many there are.

    Not needed after ``model.train()`` (the frozen layers' own ``train`` keeps them in eval
    mode); for code that sets ``module.training`` directly."""
    count = 0
    for module in _unwrap(model).modules():
        if getattr(module, _BN_FLAG, False):
            nn.Module.train(module, False)
            count += 1
    return count


def apply_freeze_schedule(model: nn.Module, what: str | None, unfreeze_at: int | None,
                          epoch: int, *, num_classes: int | None = None) -> str | None:
    """Freeze or unfreeze ``model`` for (0-based) ``epoch``: frozen while ``epoch <
    unfreeze_at`` (always, if ``unfreeze_at`` is None), so ``unfreeze_at=5`` trains the head
    alone in epochs 1-5 and everything from epoch 6 on. Idempotent: call it at the start of
    every epoch (also the first one after a resume). Returns a log line when the state changes.
    """
    if not what or what == "none":
        return None
    want = unfreeze_at is None or epoch < unfreeze_at
    if want and not is_frozen(model):
        names = freeze(model, what, num_classes=num_classes)
        trainable = sum(p.numel() for p in _unwrap(model).parameters() if p.requires_grad)
        return (f"epoch {epoch + 1}: {what} frozen ({len(names)} parameter tensors; "
                f"{trainable:,} parameters train)")
    if not want and is_frozen(model):
        names = unfreeze(model)
        trainable = sum(p.numel() for p in _unwrap(model).parameters() if p.requires_grad)
        return (f"epoch {epoch + 1}: {what} unfrozen ({len(names)} parameter tensors; "
                f"{trainable:,} parameters train)")
    return None


# --------------------------------------------------------------------------- learning rates

def split_param_groups(groups: list[dict], model: nn.Module, *, lr: float,
                       head_lr: float | None = None, backbone_lr: float | None = None,
                       decouple_wd: bool = False, num_classes: int | None = None) -> list[dict]:
    """Split optimizer parameter groups into head and backbone parts with their own rates.

    Each group's ``lr`` is relative to ``lr`` (e.g. ``bn_lr_scale``); its head part gets
    ``head_lr`` times that ratio, its backbone part ``backbone_lr`` times it (either defaults
    to ``lr``). Head parts are named ``head_<name>``, backbone parts keep their name. With
    ``decouple_wd`` the PyTorch ``weight_decay`` (``weight_decay / group_lr``) is rescaled so
    the decay per step stays the same. Both None: ``groups`` unchanged. Frozen parameters
    may be in the groups (they are skipped while their ``.grad`` is None).
    """
    if head_lr is None and backbone_lr is None:
        return groups
    head = set(head_parameter_names(model, num_classes))
    head_ids = {id(p) for n, p in _unwrap(model).named_parameters() if n in head}
    out = []
    for group in groups:
        ratio = group.get("lr", lr) / lr
        name = group.get("name", "weights")
        params = list(group["params"])
        for part, target, new_name in (
                ([p for p in params if id(p) not in head_ids], backbone_lr, name),
                ([p for p in params if id(p) in head_ids], head_lr, f"head_{name}")):
            if not part:
                continue
            new = dict(group, params=part, name=new_name)
            new_lr = (lr if target is None else target) * ratio
            if decouple_wd and group.get("weight_decay"):
                new["weight_decay"] = group["weight_decay"] * group.get("lr", lr) / new_lr
            new["lr"] = new_lr
            out.append(new)
    return out


def param_groups(model: nn.Module, lr: float, *, head_lr: float | None = None,
                 backbone_lr: float | None = None, weight_decay: float = 0.0,
                 num_classes: int | None = None) -> list[dict]:
    """All of ``model``'s parameters (frozen ones included) as a ``backbone`` group
    (``backbone_lr``, default ``lr``) and a ``head`` group (``head_lr``, default ``lr``)."""
    params = [p for p in _unwrap(model).parameters()]
    head = set(head_parameter_names(model, num_classes))
    named = dict(_unwrap(model).named_parameters())
    head_ids = {id(named[n]) for n in head}
    out = []
    backbone = [p for p in params if id(p) not in head_ids]
    for name, part, rate in (("backbone", backbone, backbone_lr),
                             ("head", [p for p in params if id(p) in head_ids], head_lr)):
        if part:
            out.append({"params": part, "lr": lr if rate is None else rate,
                        "weight_decay": weight_decay, "name": name})
    return out


# --------------------------------------------------------------------------- option checks

def check_options(config: Any) -> None:
    """Checks of the fine-tuning options of a ``TrainConfig`` (read with ``getattr``, so it
    works before all fields exist): ``init`` and ``pretrained`` exclude each other;
    ``unfreeze_at`` needs ``freeze`` and lies inside the run; learning rates are > 0."""
    init = getattr(config, "init", None)
    pretrained = getattr(config, "pretrained", False)
    what = getattr(config, "freeze", "none") or "none"
    unfreeze_at = getattr(config, "unfreeze_at", None)
    epochs = getattr(config, "epochs", None)
    if init and pretrained:
        raise UserError("give --init PATH or --pretrained, not both")
    if unfreeze_at is not None:
        if what == "none":
            raise UserError("--unfreeze-at needs --freeze (e.g. --freeze backbone)")
        if unfreeze_at < 1 or (epochs is not None and unfreeze_at >= epochs):
            raise UserError(f"unfreeze_at must be between 1 and epochs - 1 ({epochs}), got "
                            f"{unfreeze_at}: the number of epochs trained frozen")
    for key in ("head_lr", "backbone_lr"):
        value = getattr(config, key, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"{key} must be a finite number > 0, got {value}")
    head = getattr(config, "init_head", "auto")
    if head not in HEAD_CHOICES:
        raise UserError(f"unknown init_head {head!r}; choose one of {', '.join(HEAD_CHOICES)}")
