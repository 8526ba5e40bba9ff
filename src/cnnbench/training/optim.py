"""Optimizer and learning-rate schedule of a run, built from its :class:`TrainConfig`.

What weight decay means (``weight_decay``, alias ``reg``)
--------------------------------------------------------
* ``sgd``, ``adam``, ``adagrad``, ``rmsprop``: *coupled* L2 regularisation, PyTorch's
  ``weight_decay``: ``weight_decay * w`` is added to the gradient before the optimizer's
  update, so it goes through momentum and Adam's/AdaGrad's/RMSprop's per-parameter scaling
  (for the adaptive optimizers this is weaker than true weight decay on weights with large
  gradients).
* ``adamw``: *decoupled* weight decay (Loshchilov & Hutter): each step multiplies the weights by
  ``1 - lr_t * weight_decay``, outside the adaptive update.
* ``muon`` (:mod:`cnnbench.training.muon`): the convolution filters and hidden linear weights
  take orthogonalised momentum at ``muon_lr`` with decoupled decay; every other parameter (the
  classifier head, biases, normalisation layers) takes Nesterov SGD at ``lr`` with coupled L2.
* Which parameters: all of them by default, BatchNorm weights/biases and every bias included
  (PyTorch's behaviour, which the lab reports used). ``no_decay_bn_bias: true`` exempts
  normalisation-layer parameters (BatchNorm, GroupNorm, LayerNorm) and all biases.
* ``decouple_wd: true`` makes the decay independent of the learning rate, for every
  optimizer: each parameter group's PyTorch ``weight_decay`` becomes ``weight_decay / lr_group``
  (``lr_group`` = that group's peak learning rate), so at peak learning rate the step shrinks
  the weights by ``weight_decay`` (coupled through momentum for SGD, as in airbench), and the
  shrinkage follows the schedule. Changing ``lr`` or ``bn_lr_scale`` then leaves the decay
  alone (K. Jordan's airbench, arXiv 2404.00498, expresses its SGD hyperparameters this way).

Learning-rate schedules (``scheduler``), all stepped per optimizer step
-----------------------------------------------------------------------
``none`` (constant), ``step`` (x ``gamma`` every ``step_size`` epochs), ``multistep`` (x
``gamma`` at each epoch in ``milestones``), ``cosine`` and ``linear`` (decay from ``lr`` to
``lr * final_lr_frac`` over the run), ``onecycle`` (warm up from ``lr / 25`` to ``lr`` over
``warmup_epochs``, or the first quarter of the run if that is 0, then cosine decay to
``lr * final_lr_frac``), ``plateau`` (x ``gamma`` when the validation loss has not improved for
``plateau_patience`` epochs; stepped per epoch; no warmup). ``warmup_epochs`` (may be
fractional) adds a linear warmup from ~0 to ``lr`` in front of every other schedule.

Parameter groups (:func:`param_groups`): the classifier head gets ``head_lr`` and the rest
``backbone_lr`` when given (fine-tuning); parameters of normalisation layers (BatchNorm,
GroupNorm, LayerNorm, InstanceNorm) get ``bn_lr_scale`` times that; with ``no_decay_bn_bias``
they and every bias get no weight decay; with ``decouple_wd`` each group's PyTorch weight decay
is ``weight_decay / group_lr``. Frozen parameters (``requires_grad=False``) are left out.

Schedules (:func:`build_scheduler`) are per optimizer step: a
:class:`torch.optim.lr_scheduler.LambdaLR` whose factor is a pure function of the step index
(its state is the step counter, so resume is exact), or, for ``plateau``, a
:class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` that the run steps once per epoch.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnbench.config import TrainConfig
from cnnbench.errors import UserError
from cnnbench.training.checkpoint import unwrap
from cnnbench.training.muon import Muon
from cnnbench.training.transfer.heads import head_parameter_names

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm)

ONECYCLE_START_DIV = 25.0  # onecycle warms up from lr / 25 (torch.optim.lr_scheduler.OneCycleLR's)


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Parameter groups: (head or backbone) x (normalisation layer or not) x (decayed or not),
    empty ones dropped; frozen parameters (``requires_grad=False``) are left out.

    A group's ``lr`` is its peak learning rate: ``head_lr`` for the classifier head and
    ``backbone_lr`` for the rest when given (else ``lr``), times ``bn_lr_scale`` for
    normalisation layers. Its PyTorch ``weight_decay`` is ``weight_decay`` (0 for norm layers
    and biases with ``no_decay_bn_bias``), divided by that peak rate with ``decouple_wd``. Each
    group carries a ``name`` (``weights``, ``weights_no_decay``, ``norm``, ``norm_no_decay``,
    ``head_`` in front for the head's) so logs and tests can find it.
    """
    norm_params: set[int] = set()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            norm_params.update(id(p) for p in module.parameters(recurse=False))
    split_head = config.head_lr is not None or config.backbone_lr is not None
    head = set(head_parameter_names(model)) if split_head else set()
    buckets: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        is_norm = id(p) in norm_params
        is_bias = name.rsplit(".", 1)[-1] == "bias"
        decay = config.weight_decay > 0 and not (config.no_decay_bn_bias and (is_norm or is_bias))
        buckets.setdefault((name in head, is_norm, decay), []).append(p)
    groups = []
    for (is_head, is_norm, decay), params in sorted(buckets.items()):
        peak = (config.head_lr if is_head else config.backbone_lr) or config.lr
        lr = peak * (config.bn_lr_scale if is_norm else 1.0)
        wd = config.weight_decay if decay else 0.0
        if config.decouple_wd and wd:
            wd = wd / lr
        groups.append({"params": params, "lr": lr, "weight_decay": wd,
                       "name": ("head_" if is_head else "") + ("norm" if is_norm else "weights")
                       + ("" if decay else "_no_decay")})
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over :func:`param_groups`."""
    groups = param_groups(model, config)
    if not groups:
        raise UserError(f"model {config.model} has no trainable parameters")
    name = config.optimizer
    if name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov)
    if name == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=config.lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr)
    if name == "muon":
        return Muon(muon_groups(model, groups, config), lr=config.muon_lr)
    raise ValueError(f"unknown optimizer {name!r}")  # TrainConfig validates the choice


def muon_groups(model: nn.Module, groups: list[dict], config: TrainConfig) -> list[dict]:
    """:func:`param_groups` split for Muon: in each, the matrix-shaped parameters outside the
    classifier head (``<name>_muon``, at ``muon_lr``) apart from the rest (Nesterov SGD, first,
    so the learning rate logged from the first group is ``lr``'s). With ``decouple_wd`` a Muon
    group's weight decay is relative to its own rate. A run in bf16 (``amp`` resolved to bf16)
    runs the Newton-Schulz iterations in bf16 too, as airbench94_muon does."""
    head_names = set(head_parameter_names(model))
    head = {id(p) for n, p in unwrap(model).named_parameters() if n in head_names}
    out = []
    for group in groups:
        matrices = [p for p in group["params"] if p.ndim >= 2 and id(p) not in head]
        others = [p for p in group["params"] if p.ndim < 2 or id(p) in head]
        if others:
            out.append({**group, "params": others, "muon": False, "momentum": config.momentum,
                        "nesterov": True})
        if matrices:
            lr = config.muon_lr * group["lr"] / config.lr
            wd = group["weight_decay"]
            if config.decouple_wd and wd:  # param_groups divided by the SGD rate: redo for Muon's
                wd = wd * group["lr"] / lr
            out.append({**group, "params": matrices, "name": group["name"] + "_muon", "muon": True,
                        "lr": lr, "weight_decay": wd, "momentum": config.muon_momentum,
                        "nesterov": True, "normalize": config.muon_normalize,
                        "ns_steps": config.muon_ns_steps, "ns_bf16": config.amp == "bf16"})
    return out


def lr_factor_fn(config: TrainConfig, steps_per_epoch: Sequence[int]) -> Callable[[int], float]:
    """The schedule as a function of the optimizer step: ``lr_t = lr * factor(t)``.

    ``steps_per_epoch[e]`` is the number of optimizer steps in epoch ``e`` (it changes with a
    batch schedule); epoch-based settings (warmup, step size, milestones) are converted with it.
    """
    starts = [0]
    for n in steps_per_epoch:
        starts.append(starts[-1] + int(n))
    total = max(starts[-1], 1)

    def epochs_to_steps(epochs: float) -> int:  # fractional epochs allowed
        whole = min(int(epochs), len(steps_per_epoch))
        steps = starts[whole]
        if whole < len(steps_per_epoch):
            steps += round((epochs - whole) * steps_per_epoch[whole])
        return steps

    kind = config.scheduler
    warm = epochs_to_steps(config.warmup_epochs)
    if kind == "onecycle" and warm == 0:
        warm = max(1, round(0.25 * total))
    final = config.final_lr_frac
    gamma = config.gamma
    milestones = [starts[min(m, len(steps_per_epoch))] for m in config.milestones]

    def epoch_of(step: int) -> int:
        return bisect.bisect_right(starts, step) - 1

    def factor(step: int) -> float:
        if step < warm:
            if kind == "onecycle":
                lo = 1.0 / ONECYCLE_START_DIV
                return lo + (1.0 - lo) * step / warm
            return (step + 1) / warm
        if kind in ("none", "plateau"):
            return 1.0
        if kind == "step":
            return gamma ** (epoch_of(step) // config.step_size)
        if kind == "multistep":
            return gamma ** bisect.bisect_right(milestones, step)
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if kind in ("cosine", "onecycle"):
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "linear":
            return 1.0 - (1.0 - final) * progress
        raise ValueError(f"unknown scheduler {kind!r}")  # TrainConfig validates the choice

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: Sequence[int]):
    """The learning-rate schedule: a per-step ``LambdaLR``, or ``ReduceLROnPlateau`` (per epoch;
    see :func:`is_per_step`)."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.gamma, patience=config.plateau_patience)
    factor = lr_factor_fn(config, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def is_per_step(scheduler) -> bool:
    """Whether the engine steps ``scheduler`` after every optimizer step (else the run steps it
    once per epoch with the validation loss)."""
    return scheduler is not None and not isinstance(
        scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
