"""The training and evaluation loops: :func:`train_one_epoch` and :func:`evaluate`.

The hot loop never waits for the device: the loss sum and the number of correct predictions
are accumulated as device tensors and read once per epoch, and (for the step log and the
NaN/Inf check) once every ``log_every`` steps. Gradients are cleared with
``zero_grad(set_to_none=True)``; evaluation runs under ``torch.inference_mode()``.

Model outputs: logits ``(N, C)``, or in training mode a tuple ``(logits, aux1, aux2, ...)``
from models with auxiliary heads, whose loss is
``crit(logits) + model.aux_weight * sum(crit(aux))`` (docs/architecture.md, Models).

Several processes (``dist``, a :class:`cnnbench.training.distributed.Distributed`): the loader
yields this process's block of each global batch; the loss is weighed so that DDP's gradient
average is the gradient of the global batch's mean loss, and the sums read at the log points
and at the end (training) or once (evaluation) are all-reduced first, so every process gets
the numbers of the whole batch or split.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from cnnbench.devices import resolve_amp
from cnnbench.errors import UserError
from cnnbench.training.checkpoint import unwrap
from cnnbench.training.tta import predict_logits

if TYPE_CHECKING:
    from cnnbench.training.distributed import Distributed


class NonFiniteLoss(UserError):
    """The training loss became NaN or Inf; the run stops (its last good checkpoint stays)."""


class Progress(Protocol):
    """What the loops report to (a tqdm bar, plain log lines, or nothing)."""

    def update(self, images: int) -> None: ...  # once per step; host-side only

    def log(self, **metrics: float) -> None: ...  # at each synchronised log point


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {"off", "bf16", "fp16"} on ``device`` (``auto`` is
    resolved before, by :func:`cnnbench.devices.resolve_amp`)."""
    amp = resolve_amp(amp, device)
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def split_outputs(outputs) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``(logits, aux_outputs)`` from a model's output (a tensor or a tuple)."""
    if isinstance(outputs, (tuple, list)):
        return outputs[0], tuple(outputs[1:])
    return outputs, ()


def compute_loss(model: nn.Module, outputs, targets: torch.Tensor,
                 criterion: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, logits)``; auxiliary heads add ``model.aux_weight`` times their losses."""
    logits, aux = split_outputs(outputs)
    loss = criterion(logits, targets)
    if aux:
        weight = float(getattr(unwrap(model), "aux_weight", 0.3))
        loss = loss + weight * sum(criterion(a, targets) for a in aux)
    return loss, logits


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool):
    if x.device != device:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    criterion: Callable, *, scheduler=None, scaler=None, amp: str = "off",
                    device: torch.device | str | None = None, channels_last: bool = False,
                    grad_clip: float = 0.0, ema=None, log_every: int = 0,
                    on_log: Callable[[int, int, float, float], None] | None = None,
                    progress: Progress | None = None, step: int = 0,
                    images_seen: int = 0, dist: Distributed | None = None) -> dict[str, Any]:
    """Train ``model`` for one pass over ``loader``.

    Args:
        scheduler: a per-step LR scheduler (stepped after every optimizer step), or None.
        scaler: a ``torch.amp.GradScaler`` (fp16), or None.
        ema: an object with ``update(model)`` (e.g. :class:`cnnbench.training.ema.WeightAverage`),
            called after every optimizer step, or None.
        log_every: every this many steps, read the mean training loss of those steps from
            the device, check it is finite and call ``on_log(step, images_seen, loss, lr)``
            (``lr``: the learning rate of the first parameter group at that step);
            0 = only at the end of the epoch.
        step, images_seen: counters at the start of the epoch (global, across epochs).
        dist: the process group of a distributed run (``loader``: a sharded
            :class:`cnnbench.data.TensorLoader`); images and metrics are then global.

    Returns:
        ``loss`` (mean over images), ``acc``, ``images``, ``steps``, ``time_s``,
        ``images_per_s``, ``lr_max`` and ``lr_mean`` (the learning rate of the first parameter
        group over the epoch's steps), and the updated global ``step`` and ``images_seen``.

    Raises:
        NonFiniteLoss: the loss became NaN/Inf (checked at each log point and at the end).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.train()
    acc_dtype = torch.float64 if device.type in ("cpu", "cuda") else torch.float32
    loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    window_sum = torch.zeros((), dtype=acc_dtype, device=device)
    window_correct = torch.zeros((), dtype=torch.int64, device=device)
    window_images = 0
    images = 0
    steps = 0
    lr_max, lr_sum = 0.0, 0.0
    # a distributed step's images, all processes together (None: this process's batch)
    global_sizes = loader.global_batch_sizes() if dist is not None else None
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        x, y = _to_device(x, y, device, channels_last)
        n = y.shape[0]
        optimizer.zero_grad(set_to_none=True)
        lr = float(optimizer.param_groups[0]["lr"])  # a Python float: no device sync
        lr_max, lr_sum = max(lr_max, lr), lr_sum + lr
        with autocast(device, amp):
            outputs = model(x)
            loss, logits = compute_loss(model, outputs, y, criterion)
        objective = loss
        if global_sizes is not None:
            total = global_sizes[i]
            if n * dist.world_size != total:  # uneven last batch: DDP's mean of the processes'
                objective = loss * (n * dist.world_size / total)  # means is then the batch mean
            n = total  # images are counted over all processes
        if scaler is not None:
            scaler.scale(objective).backward()
            if grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            objective.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        with torch.no_grad():  # device-side accumulation: no host sync here
            batch_loss = loss.detach().to(acc_dtype) * y.shape[0]
            loss_sum += batch_loss
            window_sum += batch_loss
            batch_correct = (logits.detach().argmax(1) == y).sum()
            correct += batch_correct
            window_correct += batch_correct
        images += n
        window_images += n
        steps += 1
        step += 1
        images_seen += n
        if progress is not None:
            progress.update(n)
        if log_every and step % log_every == 0:
            # the one host sync per log_every steps
            window = torch.stack([window_sum.to(torch.float64), window_correct.to(torch.float64)])
            if dist is not None:
                dist.all_reduce_sum(window)
            window_loss, window_acc = (window / window_images).tolist()
            _check_finite(window_loss, step)
            if on_log is not None:
                on_log(step, images_seen, window_loss, lr)
            if progress is not None:
                progress.log(loss=window_loss, acc=window_acc)
            window_sum.zero_()
            window_correct.zero_()
            window_images = 0
    if images == 0:
        raise UserError("the training loader produced no batches; use more training images or a "
                        "smaller batch size")
    totals = torch.stack([loss_sum.to(torch.float64), correct.to(torch.float64)])
    if dist is not None:
        dist.all_reduce_sum(totals)
    totals = totals.tolist()
    elapsed = time.perf_counter() - start
    mean_loss = totals[0] / images
    _check_finite(mean_loss, step)
    return {"loss": mean_loss, "acc": totals[1] / images, "images": images, "steps": steps,
            "time_s": elapsed, "images_per_s": images / elapsed if elapsed > 0 else float("nan"),
            "lr_max": lr_max, "lr_mean": lr_sum / steps,
            "step": step, "images_seen": images_seen}


def _check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"training loss became {loss} by step {step}; lower the learning "
                            f"rate, add --grad-clip, or check the data")


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, *, num_classes: int,
             device: torch.device | str | None = None, amp: str = "off",
             channels_last: bool = False, tta: str = "none",
             return_predictions: bool = False, dist: Distributed | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``loader`` (the model is put in eval mode, then restored).

    With ``dist``, ``loader`` holds this process's block of the split (blocks in rank order);
    the sums are all-reduced and the predictions gathered, so every process returns the
    result of the whole split, equal to one process's.

    Returns ``loss`` (mean cross-entropy, no label smoothing), ``acc``, ``n``, ``correct``,
    ``per_class_acc`` (list; ``None`` for a class with no images), ``confusion_matrix``
    (``[true][predicted]`` counts) and, with ``return_predictions``, ``predictions`` and
    ``targets`` (CPU int64 tensors). ``tta`` other than ``"none"`` averages the logits over
    augmented views (:func:`cnnbench.training.tta.predict_logits`).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    acc_dtype = torch.float64 if device.type in ("cpu", "cuda") else torch.float32
    loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    preds, targets = [], []
    n = 0
    try:
        for x, y in loader:
            x, y = _to_device(x, y, device, channels_last)
            with autocast(device, amp):
                logits = predict_logits(model, x, tta)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").to(acc_dtype)
            pred = logits.argmax(1)
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes ** 2)
            if return_predictions:
                preds.append(pred.cpu())
                targets.append(y.cpu())
            n += y.shape[0]
    finally:
        model.train(was_training)
    if dist is not None:
        dist.all_reduce_sum(confusion)
        n = int(dist.all_reduce_sum(loss_sum.new_tensor(float(n))).item())
        dist.all_reduce_sum(loss_sum)
    if n == 0:
        raise UserError("the evaluation set is empty; use a larger split or --limit-eval")
    matrix = confusion.view(num_classes, num_classes).cpu()
    loss = loss_sum.item() / n
    correct = int(matrix.diag().sum())
    per_class_total = matrix.sum(1)
    per_class = [(int(matrix[i, i]) / int(t)) if int(t) else None
                 for i, t in enumerate(per_class_total)]
    result = {"loss": loss, "acc": correct / n, "n": n, "correct": correct,
              "per_class_acc": per_class, "confusion_matrix": matrix.tolist()}
    if return_predictions:
        result["predictions"] = _cat(preds)
        result["targets"] = _cat(targets)
        if dist is not None:
            result["predictions"] = dist.all_gather_rows(result["predictions"])
            result["targets"] = dist.all_gather_rows(result["targets"])
    return result


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
