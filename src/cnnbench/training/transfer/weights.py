"""Starting a model from other weights (``--init``, ``--pretrained``): read, match, report.

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

With ``modules`` (``--pretrained`` for a variant registered with ``pretrained_from``, such as
``vgg16_bn_tricks``, which takes ``features`` from torchvision's ``vgg16_bn``) only the tensors
under those modules are matched; every other tensor of the model is **new** ("only features
taken from the file") and the file's other tensors are passed over.

Tensors in the file under a top-level module the model lacks (torchvision GoogLeNet's
``aux1``/``aux2`` when ``aux_logits`` is off) are **ignored** and listed. Anything else (a
tensor of the model missing from the file, a file tensor under one of the model's modules
that the model lacks, a convolution or BatchNorm of another shape) means the file is for
another architecture or other options: :class:`UserError`, one line naming a few of the keys
and the model the file seems to be for.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench.config import HEAD_CHOICES
from cnnbench.errors import UserError
from cnnbench.models import list_models, model_info
from cnnbench.training.checkpoint import FORMAT as CHECKPOINT_FORMAT
from cnnbench.training.checkpoint import checkpoint_file, load_tensor_file, unwrap
from cnnbench.training.transfer.heads import (classifier_linear, first_conv_name, head_module_names,
                                              is_under, model_name)

_PREFIXES = ("module.", "_orig_mod.")


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
        path = checkpoint_file(source)  # a run directory: its best.ckpt, else last.ckpt
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
                      dataset: str | None = None, head: str = "auto",
                      modules: tuple[str, ...] | list[str] | None = None) -> LoadReport:
    """Load the weights of ``source`` into ``model`` as far as they fit; see the module
    docstring for what is loaded, replaced, adapted or left new, and :func:`read_weights` for
    the sources. Returns the :class:`LoadReport`.

    Args:
        num_classes: the model's class count (default: the outputs of its last ``nn.Linear``).
        in_chans: the model's input channels (default: those of its first convolution).
        dataset: the run's dataset; with ``head="auto"`` a cnnbench checkpoint of another
            dataset gets a fresh head even when the class count is the same.
        head: ``auto``, ``keep`` (keep the file's head when its shape fits) or ``reset``.
        modules: load only the tensors under these modules (e.g. ``("features",)``); the
            model's other tensors keep their fresh initialisation. ``None``: all of them.

    Raises:
        UserError: unreadable file, or weights of another architecture (one line).
    """
    if head not in HEAD_CHOICES:
        raise UserError(f"init head must be one of {', '.join(HEAD_CHOICES)}, got {head!r}")
    model = unwrap(model)
    src = read_weights(source)
    weights = src.weights
    own = model.state_dict()
    if modules is not None:
        modules = tuple(modules)
        absent = [m for m in modules if not any(is_under(k, (m,)) for k in own)]
        if absent or not modules:
            raise UserError(f"init: {model_name(model)} has no module "
                            f"{', '.join(absent) or '(none given)'} to load from {src.where}")
        weights = {k: t for k, t in weights.items() if is_under(k, modules)}
        skipped = f"only {', '.join(modules)} taken from the file"
    if num_classes is None:
        num_classes = classifier_linear(model, None)[1].out_features
    heads = head_module_names(model, num_classes)
    conv = first_conv_name(model, in_chans)
    conv_weight = f"{conv}.weight" if conv else None
    report = LoadReport(source=src.where, kind=src.kind, source_model=src.model,
                        source_dataset=src.dataset, model=model_name(model), total=len(own))

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
        if t is not None and is_under(key, heads) and t.shape != dst.shape:
            layer = key.rpartition(".")[0]
            head_reasons[layer] = (
                f"classifier head: {t.shape[0]} -> {dst.shape[0]} classes"
                if t.dim() >= 1 and dst.dim() >= 1 and t.shape[0] != dst.shape[0]
                else f"classifier head: {_shape(t)} in the file, {_shape(dst)} here")

    state = dict(own)
    missing: list[str] = []
    mismatched: list[str] = []
    for key, dst in own.items():
        if modules is not None and not is_under(key, modules):
            report.new[key] = skipped
            continue
        in_head = is_under(key, heads)
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

    name = model_name(model)
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
