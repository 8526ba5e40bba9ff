"""Exponential moving average (EMA) of a model's weights.

Averaging the weights over the last part of training gives a model that usually evaluates
better than the last iterate (Polyak averaging; used by D. Page, "How to train your ResNet",
2018, and by K. Jordan's airbench, arXiv 2404.00498, for fast CIFAR-10 training).

What is averaged: every tensor of ``model.state_dict()``. Floating-point tensors (parameters
and BatchNorm ``running_mean``/``running_var``) are averaged; other tensors (the integer
``num_batches_tracked``) are copied from the live model at each averaging update. Averages
are kept in the model's own dtype and device (the engine keeps fp32 master weights and uses
autocast, so this is fp32 in practice).

Closed form. ``decay`` ``d`` is given **per optimizer step**; the average is updated every
``every`` steps, each time with the decay ``D = d ** every``, so the averaging horizon,
about ``1 / (1 - d)`` optimizer steps, does not depend on ``every``. Let ``w_0`` be the
weights when the :class:`WeightAverage` is created and ``w_k`` the weights at the ``k``-th
averaging update (optimizer step ``k * every``). After ``n`` updates the average is

* ``warmup=False``: ``a_n = D**n * w_0 + sum_{k=1..n} (1 - D) * D**(n-k) * w_k``
  (the textbook EMA; the initial, untrained weights keep the weight ``D**n``, which for
  ``d = 0.999`` and a short run is far from negligible);
* ``warmup=True`` (default): ``a_n = sum_{k=1..n} (1 - D) * D**(n-k) * w_k / (1 - D**n)``,
  the bias-corrected EMA (as Adam corrects its moments): ``w_0`` gets no weight, the first
  update copies the weights, and early on the average covers the few updates that exist.

Both are computed in place by one ``lerp`` per update, ``a_n = a_{n-1} + t_n * (w_n - a_{n-1})``
with ``t_n = 1 - D`` (no warmup) or ``t_n = (1 - D) / (1 - D**n)`` (warmup): ``t_n`` is a Python
float computed from a Python step counter, so :meth:`WeightAverage.update` makes no host-device
synchronisation and costs one fused ``torch._foreach_lerp_`` over the weights.

Usage by the engine::

    average = WeightAverage(model, decay=0.999, every=5)
    for x, y in loader:
        ...; optimizer.step(); average.update(model)
    with average.swapped(model):          # evaluate / checkpoint the averaged weights
        metrics = evaluate(model, ...)
    last["training"]["ema"] = average.state_dict()  # tensors only: weights_only=True loads it

Pass the module that owns the parameters (for a ``torch.compile``-d model, the compiled
wrapper is unwrapped through its ``_orig_mod``, so state-dict names stay plain).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from cnnbench.errors import UserError
from cnnbench.training.checkpoint import unwrap

__all__ = ["WeightAverage"]

_PREFIX = "average."
_META = ("decay", "every", "warmup", "num_steps", "num_updates")


def _live_tensors(model: nn.Module) -> dict[str, Tensor]:
    return unwrap(model).state_dict(keep_vars=True)  # torch.compile wrapper -> the real module


class WeightAverage:
    """Exponential moving average of ``model``'s weights (see the module docstring).

    Args:
        model: the model being trained; its current weights become ``w_0``.
        decay: decay per optimizer step, ``0 <= decay < 1`` (``0`` keeps the last weights).
        every: average every ``every`` optimizer steps (``decay ** every`` per update).
        warmup: bias-correct the average so the initial weights get no weight.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 1, warmup: bool = True):
        if not 0.0 <= float(decay) < 1.0:
            raise UserError(f"weight-average decay must be in [0, 1) (0 = off is handled by "
                            f"the caller), got {decay}")
        if int(every) != every or every < 1:
            raise UserError(f"weight-average 'every' must be an integer >= 1, got {every}")
        self.decay = float(decay)
        self.every = int(every)
        self.warmup = bool(warmup)
        self.update_decay = self.decay ** self.every  # D in the module docstring
        self.num_steps = 0    # optimizer steps seen by update()
        self.num_updates = 0  # averaging updates made (n in the closed form)
        with torch.no_grad():
            self.averages: dict[str, Tensor] = {
                name: t.detach().clone() for name, t in _live_tensors(model).items()}
        self._float_names = [n for n, t in self.averages.items() if t.is_floating_point()]
        self._other_names = [n for n, t in self.averages.items() if not t.is_floating_point()]

    def _split(self, live: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if live.keys() != self.averages.keys():
            missing = sorted(self.averages.keys() - live.keys())
            extra = sorted(live.keys() - self.averages.keys())
            raise UserError(f"model does not match its weight average (missing {missing[:3]}, "
                            f"unexpected {extra[:3]}); create the WeightAverage from this model")
        return ([live[n] for n in self._float_names], [live[n] for n in self._other_names])

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Count one optimizer step; every ``every`` steps, fold the weights into the average."""
        self.num_steps += 1
        if self.num_steps % self.every:
            return
        self.num_updates += 1
        D = self.update_decay
        weight = (1.0 - D) / (1.0 - D ** self.num_updates) if self.warmup else 1.0 - D
        live_float, live_other = self._split(_live_tensors(model))
        if live_float:
            torch._foreach_lerp_([self.averages[n] for n in self._float_names],
                                 [t.detach() for t in live_float], weight)
        if live_other:
            torch._foreach_copy_([self.averages[n] for n in self._other_names], live_other)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averaged weights (in place)."""
        live_float, live_other = self._split(_live_tensors(model))
        live = [t.detach() for t in live_float + live_other]
        torch._foreach_copy_(live, [self.averages[n] for n in self._float_names + self._other_names])

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Put the averaged weights into ``model`` for the ``with`` block, then restore the
        live weights bit for bit (also after an exception), so training continues exactly."""
        with torch.no_grad():
            live = _live_tensors(model)
            backup = {name: t.detach().clone() for name, t in live.items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, t in live.items():
                    t.detach().copy_(backup[name])

    def state_dict(self) -> dict[str, Tensor]:
        """A flat dict of tensors (safe for ``torch.load(weights_only=True)``): the averages under
        ``average.<name>`` and the settings/counters as 0-d tensors."""
        state = {
            "decay": torch.tensor(self.decay, dtype=torch.float64),
            "every": torch.tensor(self.every, dtype=torch.int64),
            "warmup": torch.tensor(self.warmup),
            "num_steps": torch.tensor(self.num_steps, dtype=torch.int64),
            "num_updates": torch.tensor(self.num_updates, dtype=torch.int64),
        }
        state.update({_PREFIX + name: t.detach().clone() for name, t in self.averages.items()})
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a :meth:`state_dict`; continuing afterwards is bit-identical to never stopping.

        The decay, ``every`` and ``warmup`` stored in ``state`` must equal this object's: a
        resumed run must average the way it started (a mismatch raises :class:`UserError`).
        """
        expected = set(_META) | {_PREFIX + n for n in self.averages}
        if set(state) != expected:
            missing = sorted(expected - set(state))
            extra = sorted(set(state) - expected)
            raise UserError(f"weight-average state does not match the model (missing "
                            f"{missing[:3]}, unexpected {extra[:3]}); resume with the same model")
        saved = (float(state["decay"]), int(state["every"]), bool(state["warmup"]))
        if saved != (self.decay, self.every, self.warmup):
            raise UserError(f"checkpoint averaged weights with decay={saved[0]}, every={saved[1]}, "
                            f"warmup={saved[2]}, this run asks for decay={self.decay}, "
                            f"every={self.every}, warmup={self.warmup}; resume with the same settings")
        for name, t in self.averages.items():
            src = state[_PREFIX + name]
            if src.shape != t.shape:
                raise UserError(f"weight-average tensor {name!r} has shape {tuple(src.shape)}, "
                                f"the model has {tuple(t.shape)}; resume with the same model")
            t.copy_(src)
        self.num_steps = int(state["num_steps"])
        self.num_updates = int(state["num_updates"])
