"""The training loop, top to bottom: a run, its epochs, their steps. Read this file first.

::

    summary = train_run(config, out_dir=None, resume=False, argv=None, progress=True)

A run: set-up (:func:`cnnbench.training.setup.build_training`: data, model, ``--init``
weights, loaders, optimizer, schedule, gradient scaler, weight average, loss), then for each
epoch: its settings (freeze and whitening schedules, the loader's epoch and size), the steps
(:func:`train_one_epoch`: data, forward, loss, backward, clipping, optimizer step, per-step
schedule, weight average), validation, a per-epoch schedule, selection, checkpoint and logs;
at the end the test set, evaluated once. Bookkeeping (run directory, TensorBoard, logs,
checkpoints, summary) is :class:`cnnbench.training.record.Recorder`'s; evaluation is
:func:`cnnbench.training.evaluation.evaluate`.

Selection and the test: the best validation epoch's weights are tested (``val_split`` 0: the
final weights; ``test_weights: last``: the last epoch's, with the best one's test accuracy
recorded beside it); the summary's ``tested_weights`` says which. With ``monitor_test`` the
test set is also evaluated after every epoch, for curves and a lab report's "best test
accuracy over epochs"; it never selects weights.

Resume: a run killed at any moment continues (``resume=True``) from its last completed epoch:
the logs of later epochs and steps are dropped, the RNG, optimizer, schedule, scaler and
weight-average states are restored, and the loaders are a function of (seed, epoch), so on CPU
with ``deterministic`` the resumed run ends bit-identical to one never stopped.

The hot loop never waits for the device: the loss sum and the number of correct predictions
are accumulated as device tensors and read once per epoch and once every ``log_every`` steps
(the step log and the NaN/Inf check). Gradients are cleared with ``set_to_none``.

Started by torchrun (:mod:`cnnbench.training.distributed`), every process runs this loop on its
block of each global batch (the loss weighed so that DDP's gradient average is the gradient of
the global batch's mean loss; the sums read at the log points all-reduced) and takes part in
the same evaluations; rank 0 names the run directory and alone writes it.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from cnnbench.config import TrainConfig
from cnnbench.devices import autocast
from cnnbench.errors import UserError
from cnnbench.training import distributed
from cnnbench.training.calibration import fit_temperature
from cnnbench.training.checkpoint import unwrap
from cnnbench.training.console import Console
from cnnbench.training.evaluation import to_device
from cnnbench.training.optim import is_per_step
from cnnbench.training.record import NonFiniteLoss, Recorder, fresh_meta
from cnnbench.training.rundir import BEST, LAST, check_same_precision, now, plan_run
from cnnbench.training.setup import Training, build_training

if TYPE_CHECKING:
    from cnnbench.training.distributed import Distributed

__all__ = ["NonFiniteLoss", "train_epoch", "train_one_epoch", "train_run"]


def train_run(config: TrainConfig | None, out_dir: str | Path | None = None, resume: bool = False,
              argv: list[str] | None = None, progress: bool = True, *, test: bool = True,
              on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train one run into its directory and return its summary (also in ``summary.json``).

    Args:
        config: the resolved config (:func:`cnnbench.config.resolve.resolve_config`). With
            ``resume`` it may be ``None`` (use the saved one) or must equal the saved one
            except for :data:`cnnbench.config.RESUMABLE_CHANGES`.
        out_dir: the run directory (else ``config.out``, else ``runs/<model>-<dataset>-<time>``).
        resume: continue the run in ``out_dir`` (:func:`cnnbench.training.rundir.plan_run`: a
            finished run returns its summary; a run that never completed an epoch starts over).
        argv: the command line, recorded in the summary.
        progress: show progress (tqdm on a terminal, plain lines otherwise); False = silent.
        test: False ends the run after its epochs without touching the test set (status
            ``trained``; a search's trials): resuming it later (``resume=True``) tests it.
        on_epoch: called with each epoch's logged metrics (``epoch``, ``val_acc``, ...) after
            its checkpoint; returning True stops the run there, untested (status ``pruned``:
            a search's pruner). One process only.

    Raises:
        UserError: bad input, or the loss became NaN/Inf (``error.txt`` and a summary with
            status ``failed`` are written; ``last.ckpt`` keeps the last good epoch). Under
            torchrun any other error of a process becomes a one-line
            :class:`cnnbench.training.distributed.ProcessFailed`.
    """
    plan = plan_run(config, out_dir, resume)
    if plan.state == "finished":
        return plan.summary
    config, run_dir, resume = plan.config, plan.run_dir, plan.state == "interrupted"
    dist = distributed.setup(config.device, config.dist_backend)  # None: one process
    if dist is not None:  # rank 0 names the run directory (a default name holds the time)
        run_dir, resume = dist.broadcast_object((run_dir, resume))
    if on_epoch is not None and dist is not None:
        dist.close()  # the group is left as it was found: a caller's process goes on
        raise UserError("a pruned search trains each trial in one process; leave out torchrun")
    record = Recorder(config=config, run_dir=run_dir,
                      console=Console(progress and (dist is None or dist.is_main)),
                      argv=list(argv) if argv is not None else list(sys.argv), resume=resume,
                      dist=dist)
    try:
        return _train(config, record, dist, test, on_epoch)
    except BaseException as exc:
        traceback_file = record.fail(exc)
        if dist is not None and not isinstance(exc, (UserError, KeyboardInterrupt)):
            raise dist.failure(exc, traceback_file) from exc
        raise
    finally:
        record.close()
        if dist is not None:  # also on failure: a peer waiting in a collective learns of it
            dist.close()


def _train(c: TrainConfig, record: Recorder, dist: Distributed | None, test: bool,
           on_epoch: Callable[[dict[str, Any]], bool] | None) -> dict[str, Any]:
    started = now()
    # -- set-up: data, model and --init weights first (a bad input leaves no run directory)
    t = build_training(c, load_init_weights=not record.resume, dist=dist)
    if record.resume:
        check_same_precision(record.run_dir, c.amp, t.config.amp)
    record.open(t, started)
    if record.resume:  # weights, optimizer, schedule, RNG and loaders as after the last epoch
        start_epoch, meta = record.restore(t)
    else:
        start_epoch, meta = 0, fresh_meta()
        meta["train_time_s"] += t.whiten()  # patch-whitening initialisation, if asked
    record.open_tensorboard(t.step)

    for epoch in range(start_epoch, c.epochs):
        if meta["stopped_early"]:
            break
        # -- the epoch's settings: freeze schedule, whitening bias, the loader's epoch and size
        record.line(t.start_epoch(epoch))
        record.console.start_epoch(epoch + 1, c.epochs, t.loader(epoch).num_samples)
        # -- the steps
        stats = train_epoch(t, epoch, on_log=record.log_step if record.main else None,
                            progress=record.console)
        record.console.end_epoch()
        meta["train_time_s"] += stats["time_s"]
        meta["images_seen"] = t.images_seen
        if dist is not None:  # every process evaluates and saves the same BatchNorm statistics
            t.average_batchnorm_statistics()
        # -- evaluation (the weight average's, if any) and a per-epoch schedule (plateau)
        val = None
        if t.val_loader is not None:
            t0 = time.perf_counter()
            val = t.evaluate("val")
            meta["eval_time_s"] += time.perf_counter() - t0
        if not is_per_step(t.scheduler):
            t.scheduler.step(val["loss"] if val else stats["loss"])
        monitor = _monitor_test(t, meta, epoch + 1) if c.monitor_test else {}
        # -- logging
        logged = {
            "epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
            "val_loss": val["loss"] if val else None, "val_acc": val["acc"] if val else None,
            "lr": stats["lr_max"], "lr_mean": stats["lr_mean"],
            "batch_size": c.batch_size_at(epoch), "epoch_time_s": stats["time_s"],
            "train_images_per_s": stats["images_per_s"], "images_seen": meta["images_seen"],
            **monitor}
        record.log_epoch(logged, t.step)
        # -- selection on validation, early stopping, checkpoint
        improved = val is not None and (meta["best_val_acc"] is None or val["acc"] > meta["best_val_acc"])
        if improved:
            meta.update(best_val_acc=val["acc"], best_epoch=epoch + 1, epochs_since_best=0)
        elif val is not None:
            meta["epochs_since_best"] += 1
        if c.early_stop and val is not None and meta["epochs_since_best"] >= c.early_stop:
            meta["stopped_early"] = True
        weights = t.weights_to_save() if record.main else None  # rank 0 saves them
        record.checkpoint(t, weights, epoch + 1, meta, improved)
        if on_epoch is not None and on_epoch(logged):  # a search's pruner stops the trial
            return record.finish_untested(t, meta, "pruned")

    if not test:  # a search's trial: the test set stays untouched until one trial is chosen
        return record.finish_untested(t, meta, "trained")
    # -- the end: the test set, evaluated once
    selected = t.val_loader is not None
    if not selected:  # no selection possible: the final weights are tested
        record.save(BEST, t.weights_to_save(), record.last_good_epoch, t.step, meta)
    best = record.load(BEST)
    last = selected and c.test_weights == "last"
    t0 = time.perf_counter()
    if last:  # as the report did: the last epoch's weights; the honest number beside it
        record.summary["best_val_test_acc"] = t.evaluate_saved("test", best["model"])["acc"]
        weights = record.load(LAST)["model"]
    else:
        weights = best["model"]
    temperature = None
    if selected:  # calibration: one temperature fitted on validation, never on the test set
        val = t.evaluate_saved("val", weights, return_logits=True)
        temperature = fit_temperature(val["logits"], val["targets"])
    test = t.evaluate_saved("test", weights, return_predictions=True, temperature=temperature)
    test_time = time.perf_counter() - t0
    meta["eval_time_s"] += test_time
    tested = "last" if last else "best" if selected else "final"
    return record.finish(t, test, meta, tested, test_time,
                         explain=lambda rows, classes: t.explain_saved(weights, rows, classes))


def _monitor_test(t: Training, meta: dict[str, Any], epoch: int) -> dict[str, float]:
    """``monitor_test``: the test accuracy of this epoch's weights, for curves and a report's
    "best test accuracy over epochs" only; selection stays on validation."""
    t0 = time.perf_counter()
    test = t.evaluate("test")
    meta["eval_time_s"] += time.perf_counter() - t0
    if meta.get("max_epoch_test_acc") is None or test["acc"] > meta["max_epoch_test_acc"]:
        meta.update(max_epoch_test_acc=test["acc"], max_epoch_test_epoch=epoch)
    return {"epoch_test_loss": test["loss"], "epoch_test_acc": test["acc"]}


def train_epoch(t: Training, epoch: int, *, on_log: Callable[[int, int, float, float], None] | None = None,
                progress=None) -> dict[str, Any]:
    """(0-based) ``epoch`` of the run ``t`` through :func:`train_one_epoch`; advances ``t.step``
    and ``t.images_seen`` (the benchmarks call it too, so they measure the real path)."""
    c = t.config
    with warnings.catch_warnings():  # fp16 may skip a step: the schedule still advances
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        stats = train_one_epoch(
            t.train_model, t.loader(epoch), t.optimizer, t.criterion,
            scheduler=t.scheduler if is_per_step(t.scheduler) else None, scaler=t.scaler,
            amp=c.amp, device=t.device, channels_last=c.channels_last, grad_clip=c.grad_clip,
            ema=t.ema, log_every=c.log_every, on_log=on_log, progress=progress, step=t.step,
            images_seen=t.images_seen, dist=t.dist)
    t.step, t.images_seen = stats["step"], stats["images_seen"]
    return stats


class Progress(Protocol):
    """What the step loop reports to (a tqdm bar, plain log lines, or nothing)."""

    def update(self, images: int) -> None: ...  # once per step; host-side only

    def log(self, **metrics: float) -> None: ...  # at each synchronised log point


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    criterion: Callable, *, scheduler=None, scaler=None, amp: str = "off",
                    device: torch.device | str | None = None, channels_last: bool = False,
                    grad_clip: float = 0.0, ema=None, log_every: int = 0,
                    on_log: Callable[[int, int, float, float], None] | None = None,
                    progress: Progress | None = None, step: int = 0,
                    images_seen: int = 0, dist: Distributed | None = None) -> dict[str, Any]:
    """The steps of one pass over ``loader``: data, forward, loss, backward, clipping,
    optimizer step, per-step schedule, weight average.

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
    window_images = images = steps = 0
    lr_max, lr_sum = 0.0, 0.0
    # a distributed step's images, all processes together (None: this process's batch)
    global_sizes = loader.global_batch_sizes() if dist is not None else None
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        # -- data
        x, y = to_device(x, y, device, channels_last)
        n = y.shape[0]
        optimizer.zero_grad(set_to_none=True)
        lr = float(optimizer.param_groups[0]["lr"])  # a Python float: no device sync
        lr_max, lr_sum = max(lr_max, lr), lr_sum + lr
        # -- forward and loss
        with autocast(device, amp):
            outputs = model(x)
            loss, logits = compute_loss(model, outputs, y, criterion)
        objective = loss
        if global_sizes is not None:
            total = global_sizes[i]
            if n * dist.world_size != total:  # uneven last batch: DDP's mean of the processes'
                objective = loss * (n * dist.world_size / total)  # means is then the batch mean
            n = total  # images are counted over all processes
        # -- backward, clipping (of the unscaled gradients), optimizer step
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
        # -- schedule and weight average
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        # -- metrics, accumulated on the device: no host sync here
        with torch.no_grad():
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
        # -- the step log: the one host sync per log_every steps
        if log_every and step % log_every == 0:
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


def compute_loss(model: nn.Module, outputs, targets: torch.Tensor,
                 criterion: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, logits)``. Model outputs are logits ``(N, C)``, or in training mode a tuple
    ``(logits, aux1, ...)`` from models with auxiliary heads, whose losses add
    ``model.aux_weight`` times theirs (docs/architecture.md, Models)."""
    if isinstance(outputs, (tuple, list)):
        logits, aux = outputs[0], tuple(outputs[1:])
    else:
        logits, aux = outputs, ()
    loss = criterion(logits, targets)
    if aux:
        weight = float(getattr(unwrap(model), "aux_weight", 0.3))
        loss = loss + weight * sum(criterion(a, targets) for a in aux)
    return loss, logits


def _check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"training loss became {loss} by step {step}; lower the learning "
                            f"rate, add --grad-clip, or check the data")
