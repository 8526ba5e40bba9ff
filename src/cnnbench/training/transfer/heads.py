"""The classifier head of any model, and freezing everything else.

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
it; ``unfreeze`` removes it).

Frozen parameters stay in the optimizer: build it **before** freezing
(:func:`cnnbench.training.optim.build_optimizer` gives the head and the backbone their own
learning rates, ``head_lr`` / ``backbone_lr``). PyTorch's optimizers skip
a parameter whose ``.grad`` is ``None`` (no update, no weight decay, no momentum), so freezing
costs nothing, unfreezing needs no new optimizer, and the optimizer's ``state_dict`` has the
same layout in every epoch (exact resume).
"""

from __future__ import annotations

import types
from collections.abc import Iterable

from torch import nn

from cnnbench.errors import UserError
from cnnbench.training.checkpoint import unwrap

_FROZEN_ATTR = "_cnnbench_frozen"           # on the model: names of the parameters we froze
_BN_FLAG = "_cnnbench_frozen_bn"            # on a BatchNorm layer frozen in eval mode


def model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", None) or type(model).__name__


# --------------------------------------------------------------------------- the head

def classifier_linear(model: nn.Module, num_classes: int | None) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if num_classes is not None:
        linears = [(n, m) for n, m in linears if m.out_features == num_classes]
    if not linears:
        what = f"an nn.Linear with {num_classes} outputs" if num_classes else "an nn.Linear"
        raise UserError(f"cannot find the classifier head of {model_name(model)}: it has no "
                        f"{what}; freezing and head learning rates need one")
    return linears[-1]


def head_module_names(model: nn.Module, num_classes: int | None = None) -> list[str]:
    """Names of the head's modules: the classifier (the last ``nn.Linear`` with ``num_classes``
    outputs; with ``num_classes=None`` the last ``nn.Linear``), every module registered after
    it, and the auxiliary classifiers (top-level children holding another ``nn.Linear`` with
    that many outputs). ``resnet18`` -> ``["fc"]``; ``vgg16`` -> ``["classifier.6"]``;
    GoogLeNet with ``aux_logits`` -> ``["aux1", "aux2", "fc"]``."""
    model = unwrap(model)
    head_name, head = classifier_linear(model, num_classes)
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


def is_under(name: str, prefixes: Iterable[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def head_parameter_names(model: nn.Module, num_classes: int | None = None) -> list[str]:
    """Names of the head's parameters (see :func:`head_module_names`)."""
    heads = head_module_names(model, num_classes)
    return [n for n, _ in unwrap(model).named_parameters() if is_under(n, heads)]


def first_conv_name(model: nn.Module, in_chans: int | None = None) -> str | None:
    """Name of the first ``nn.Conv2d`` (registration order), with ``in_chans`` inputs if given."""
    for name, module in unwrap(model).named_modules():
        if isinstance(module, nn.Conv2d) and (in_chans is None or module.in_channels == in_chans):
            return name
    return None


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
        raise UserError(f"freeze: {model_name(model)} has no module {', '.join(unknown)}; give "
                        f"backbone, none, or module names such as {tops}")
    return prefixes


def freeze(model: nn.Module, what: str = "backbone", *, num_classes: int | None = None,
           keep: Iterable[str] = ()) -> list[str]:
    """Freeze part of ``model``; return the names of the parameters frozen by this call.

    ``what``: ``"backbone"`` (everything but the head, see :func:`head_module_names`),
    ``"none"``, or comma-separated module names (``"conv1,bn1,layer1"``). Frozen parameters get
    ``requires_grad=False``; frozen BatchNorm layers stay in eval mode through ``model.train()``.
    ``keep``: parameter names that stay trainable whatever ``what`` says (the layers an
    ``--init`` left at their fresh initialisation: frozen, they would stay random). Idempotent;
    :func:`unfreeze` undoes it.
    """
    keep = set(keep)
    model = unwrap(model)
    what = (what or "none").strip()
    if what == "none":
        return []
    if what == "backbone":
        heads = head_module_names(model, num_classes)
        def chosen(name: str) -> bool:
            return not is_under(name, heads)
    else:
        prefixes = _freeze_prefixes(model, what)
        def chosen(name: str) -> bool:
            return is_under(name, prefixes)
    kept_modules = {name.rpartition(".")[0] for name in keep}

    def selected(name: str) -> bool:  # a parameter's or a module's name
        return chosen(name) and name not in keep and name not in kept_modules
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
    model = unwrap(model)
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
    return bool(getattr(unwrap(model), _FROZEN_ATTR, ()))


def apply_freeze_schedule(model: nn.Module, what: str | None, unfreeze_at: int | None,
                          epoch: int, *, num_classes: int | None = None,
                          keep: Iterable[str] = ()) -> str | None:
    """Freeze or unfreeze ``model`` for (0-based) ``epoch``: frozen while ``epoch <
    unfreeze_at`` (always, if ``unfreeze_at`` is None), so ``unfreeze_at=5`` trains the head
    alone in epochs 1-5 and everything from epoch 6 on. Idempotent: call it at the start of
    every epoch (also the first one after a resume). ``keep``: as for :func:`freeze`. Returns a
    log line when the state changes.
    """
    if not what or what == "none":
        return None
    want = unfreeze_at is None or epoch < unfreeze_at
    if want and not is_frozen(model):
        keep = sorted(keep)
        names = freeze(model, what, num_classes=num_classes, keep=keep)
        trainable = sum(p.numel() for p in unwrap(model).parameters() if p.requires_grad)
        kept = (f"; {len(keep)} tensors left new by --init train too ({', '.join(keep[:3])}"
                f"{', ...' if len(keep) > 3 else ''})" if keep else "")
        return (f"epoch {epoch + 1}: {what} frozen ({len(names)} parameter tensors; "
                f"{trainable:,} parameters train{kept})")
    if not want and is_frozen(model):
        names = unfreeze(model)
        trainable = sum(p.numel() for p in unwrap(model).parameters() if p.requires_grad)
        return (f"epoch {epoch + 1}: {what} unfrozen ({len(names)} parameter tensors; "
                f"{trainable:,} parameters train)")
    return None
