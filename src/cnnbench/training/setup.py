"""Set-up: everything a training run builds from its config, in one object.

::

    t = build_training(config)   # threads, device, seeds, data, model (+ --init), loaders,
                                 # optimizer, schedule, scaler, weight average, loss, compile

:class:`Training` holds what :mod:`cnnbench.training.loop` trains with, and the state changes
the loop asks of it by name: ``whiten`` (patch-whitening initialisation), ``start_epoch`` (the
epoch's freeze and whitening schedules, the loader's epoch and size), ``evaluate`` (the
current weights, or their average), ``evaluate_saved`` (a checkpoint's weights in a fresh
model), ``weights_to_save`` and ``training_state`` / ``load_training_state`` (checkpoints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import torch
from torch import nn

from cnnbench.config import TrainConfig
from cnnbench.data import DatasetSpec, TensorLoader
from cnnbench.errors import UserError
from cnnbench.models import create_model_for, model_cost
from cnnbench.training import transfer, whitening
from cnnbench.training.checkpoint import (capture_rng_state, load_model_weights, model_state,
                                          unwrap)
from cnnbench.training.distributed import Distributed, batchnorm_statistics, process_seed
from cnnbench.training.ema import WeightAverage
from cnnbench.training.evaluation import evaluate, gallery_heat, saved_model
from cnnbench.devices import resolve_amp
from cnnbench.training.machine import (keep_freed_memory, match_threads_to_load, resolve_device,
                                      seed_everything, set_determinism)
from cnnbench.training.optim import build_optimizer, build_scheduler
from cnnbench.training.inputs import Inputs, make_loader, prepare_data

WHITEN_IMAGES = 5000  # training images used for the whitening statistics


def check_lowres(config: TrainConfig, inputs: Inputs) -> None:
    """A one-line error unless the model built for ``inputs`` also takes
    ``config.lowres_size`` inputs (progressive resizing); checked on the meta device."""
    spec, size = inputs.spec, config.lowres_size
    if size >= min(inputs.input_size):
        raise UserError(f"--lowres-size {size} is not smaller than the training images "
                        f"({'x'.join(map(str, inputs.input_size))}); progressive resizing needs "
                        f"a smaller size, e.g. --lowres-size {max(1, 3 * min(inputs.input_size) // 4)}")
    with torch.device("meta"):
        probe = create_model_for(config, spec, inputs.input_size)
        try:
            probe(torch.empty(2, spec.channels, size, size))
        except (RuntimeError, UserError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"--lowres-size {size} does not fit {config.model} built for "
                f"{'x'.join(map(str, inputs.input_size))} inputs ({reason}); choose a larger "
                f"--lowres-size, or a model that pools globally (e.g. fastnet, resnet18)") from None


def load_init(model: nn.Module, config: TrainConfig, spec: DatasetSpec) -> transfer.LoadReport:
    """Start ``model`` from ``config.init``, or with ``config.pretrained`` from torchvision's
    ImageNet weights (README: Fine-tuning): all of them, or for a lab report's variant
    registered with ``pretrained_from`` only its modules that are torchvision's
    (``vgg16_bn_tricks``: the features of ``vgg16_bn``)."""
    modules = None
    if config.init:
        source = config.init
    else:
        source = str(transfer.pretrained_weights_path(config.model))
        modules = transfer.pretrained_source(config.model)[1]
    return transfer.load_init_weights(model, source, num_classes=spec.num_classes,
                                      in_chans=spec.channels, dataset=config.dataset,
                                      head=config.init_head, modules=modules)


@dataclasses.dataclass
class Training:
    """What a run trains with, built by :func:`build_training`; its methods are the steps of
    the run loop. ``step`` and ``images_seen`` count optimizer steps and training images over
    the whole run."""

    config: TrainConfig
    device: torch.device
    data: Inputs
    model: nn.Module                         # owns the weights
    train_model: nn.Module                   # what the loop calls: ``model`` or its torch.compile
                                             # (distributed: in DistributedDataParallel)
    eval_model: nn.Module                    # what evaluation calls: ``model`` or its torch.compile
    train_loaders: dict[int, TensorLoader]   # by batch size (a batch schedule has several)
    val_loader: TensorLoader | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    ema: WeightAverage | None
    criterion: nn.Module
    params: int
    macs: int | None
    init_report: transfer.LoadReport | None = None
    keep_trainable: tuple[str, ...] = ()     # parameters an --init left new: never frozen
    step: int = 0
    images_seen: int = 0
    eval_loaders: dict[str, TensorLoader] = dataclasses.field(default_factory=dict)
    dist: Distributed | None = None          # the process group of a torchrun job, else None
    saved_copy: nn.Module | None = None      # the model saved weights are evaluated in: built once
    threads_note: str | None = None          # fewer threads than PyTorch's default, and why

    @property
    def spec(self) -> DatasetSpec:
        return self.data.spec

    def loader(self, epoch: int) -> TensorLoader:
        """The training loader of (0-based) ``epoch`` (its batch size from the schedule)."""
        return self.train_loaders[self.config.batch_size_at(epoch)]

    def whiten(self) -> float:
        """Patch-whitening initialisation of the first convolution (``whiten_init``) from up to
        :data:`WHITEN_IMAGES` training images spread evenly over the training set (not the first
        ones: some datasets are stored in class order), as the model sees them (normalised,
        resized; no augmentation). Returns its seconds (training time); 0 when off."""
        if not self.config.whiten_init:
            return 0.0
        t0 = time.perf_counter()
        x, y = self.data.train
        pick = torch.linspace(0, len(y) - 1, min(WHITEN_IMAGES, len(y))).long()
        loader = TensorLoader(x[pick], y[pick], batch_size=len(pick), shuffle=False,
                              mean=self.data.mean, std=self.data.std, augment="none",
                              resize=self.config.resize, device=self.device)
        images = next(iter(loader))[0]
        whitening.init_patch_whitening(whitening.find_whitening_conv(self.model), images)
        if self.dist is not None:  # every process computed the same; make sure it is bit-equal
            self.dist.broadcast_module(self.model)
        return time.perf_counter() - t0

    def start_epoch(self, epoch: int) -> str | None:
        """Put the model and the epoch's loader in the state of (0-based) ``epoch``: the freeze
        schedule, the whitening layer's schedule (``whiten_bias_epochs``), the loader's epoch
        (augmentation streams) and size (progressive resizing). Every setting follows from the
        epoch number alone, so a resumed run is in the same state. Returns the freeze
        schedule's log line, if any."""
        c = self.config
        change = transfer.apply_freeze_schedule(self.model, c.freeze, c.unfreeze_at, epoch,
                                                num_classes=self.spec.num_classes,
                                                keep=self.keep_trainable)
        if c.whiten_bias_epochs >= 0:
            conv = whitening.find_whitening_conv(self.model)
            # The bias trains in its first epochs unless the freeze schedule froze it (freezing
            # runs from epoch 0 to unfreeze_at, so requires_grad still says so here).
            bias = conv.bias is not None and conv.bias.requires_grad and epoch < c.whiten_bias_epochs
            whitening.set_whitening_trainable(conv, weight=False, bias=bias)
        loader = self.loader(epoch)
        loader.set_epoch(epoch)
        loader.resize = c.lowres_size if epoch < c.lowres_epochs else c.resize
        return change

    def average_batchnorm_statistics(self) -> None:
        """Distributed, without SyncBatchNorm: replace each process's BatchNorm running
        statistics (and their weight averages) by their mean over the processes, so that every
        process evaluates and saves the same model."""
        names = batchnorm_statistics(self.model)
        live = unwrap(self.model).state_dict(keep_vars=True)
        tensors = [live[n] for n in names]
        if self.ema is not None:
            tensors += [self.ema.averages[n] for n in names]
        self.dist.average_(tensors)

    def evaluate(self, split: str) -> dict[str, Any]:
        """Evaluate the current evaluation weights (the weight average when ``ema`` is on) on
        ``split`` (``val`` or ``test``) with the run's test-time augmentation."""
        loader = self.eval_loader(split)
        if self.ema is None:
            return self._evaluate(self.eval_model, loader)
        with self.ema.swapped(self.model):
            return self._evaluate(self.eval_model, loader)

    def evaluate_saved(self, split: str, weights: dict[str, torch.Tensor], *,
                       source: str = "checkpoint", **kw) -> dict[str, Any]:
        """Evaluate ``weights`` (e.g. ``best.ckpt``'s, named ``source`` in an error) on
        ``split`` in a fresh copy of the model, leaving the training model alone; ``kw``:
        :func:`evaluate`'s ``return_predictions``, ``return_logits``, ``temperature``."""
        if split == "val" and self.data.val is None:
            raise UserError(f"the run of {source} has no validation split (val_split 0); use "
                            f"--split test")
        return self._evaluate(self._saved(weights, source), self.eval_loader(split), **kw)

    def explain_saved(self, weights: dict[str, torch.Tensor], rows: torch.Tensor,
                      classes: torch.Tensor) -> dict[str, Any]:
        """Grad-CAM heat maps of ``weights`` (in a fresh model) for the test images at
        ``rows`` and ``classes``: :func:`cnnbench.training.evaluation.gallery_heat`."""
        return gallery_heat(self._saved(weights, "checkpoint"), self.config, self.data,
                            self.device, rows, classes)

    def _saved(self, weights: dict[str, torch.Tensor], source: str) -> nn.Module:
        """A copy of the model, apart from the training one, holding ``weights``: built at
        the first call, its weights replaced at the next."""
        if self.saved_copy is None:
            self.saved_copy = saved_model(self.config, self.spec, self.data.input_size, weights,
                                          source, self.device)
        else:
            load_model_weights(self.saved_copy, weights, source, self.config.model)
        return self.saved_copy

    def eval_loader(self, split: str) -> TensorLoader:
        """The evaluation loader of ``split``, built once (its images copied to the device
        once, not at every evaluation)."""
        if split == "val" and self.val_loader is None:
            raise UserError("this run has no validation split (val_split 0)")
        if split == "val":
            return self.val_loader
        if split not in self.eval_loaders:
            self.eval_loaders[split] = make_loader(self.config, self.data, split, self.device,
                                                   dist=self.dist)
        return self.eval_loaders[split]

    def _evaluate(self, model: nn.Module, loader, **kw) -> dict[str, Any]:
        c = self.config
        return evaluate(model, loader, num_classes=self.spec.num_classes, device=self.device,
                        amp=c.amp, channels_last=c.channels_last, tta=c.tta, dist=self.dist,
                        **kw)

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the weights to evaluate and checkpoint (the weight average if on)."""
        if self.ema is None:
            return model_state(self.model)
        with self.ema.swapped(self.model):
            return model_state(self.model)

    def training_state(self) -> dict[str, Any]:
        """Everything besides the evaluation weights that a run needs to continue exactly
        (``last.ckpt``'s ``training`` entry, :mod:`cnnbench.training.checkpoint`). Distributed,
        every process calls it: ``rng_ranks`` gathers each process's generators (the model,
        optimizer and schedule are the same on every process)."""
        state = {
            "model": model_state(self.model) if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": capture_rng_state(),
            "keep_trainable": list(self.keep_trainable),  # --init's new layers: never frozen
        }
        if self.dist is not None:
            state["rng_ranks"] = self.dist.gather_objects(state["rng"])
        return state

    def rng_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """This process's generator states in a :meth:`training_state` (distributed: its own
        when the checkpoint has one per process of the same job size, else rank 0's)."""
        ranks = state.get("rng_ranks")
        if self.dist is not None and ranks and len(ranks) == self.dist.world_size:
            return ranks[self.dist.rank]
        return state["rng"]

    def load_training_state(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Inverse of :meth:`training_state` (``weights``: the checkpoint's evaluation weights,
        used as the live weights when no weight average is kept). The RNG states are restored
        last, by the caller, just before the next epoch."""
        unwrap(self.model).load_state_dict(state["model"] if state["model"] is not None else weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise UserError("the checkpoint has no weight average but the config asks for one")
            self.ema.load_state_dict(state["ema"])
        self.keep_trainable = tuple(state.get("keep_trainable", ()))


def job_amp(amp: str, device: torch.device, dist=None) -> str:
    """``amp`` resolved for this run (:func:`cnnbench.devices.resolve_amp`: ``auto`` is the
    precision that pays on the device, on a CPU a measured verdict); in a job every process
    takes rank 0's, so that all train alike."""
    if dist is None:
        return resolve_amp(amp, device)
    return dist.broadcast_object(resolve_amp(amp, device) if dist.is_main else None)


def build_training(config: TrainConfig, *, load_init_weights: bool = True,
                   dist: Distributed | None = None) -> Training:
    """Everything a run of ``config`` trains with, built in the order the run needs it:
    threads, determinism, device, seeds, data, model (with ``--init`` / ``--pretrained``
    weights unless ``load_init_weights`` is False, as when resuming), loaders, optimizer,
    per-step schedule, gradient scaler (fp16), weight average, loss and ``torch.compile``.
    A bad input raises :class:`UserError` before anything is written. ``dist``: this process's
    place in a torchrun job (:func:`cnnbench.training.distributed.setup`): its device, its
    shard of the data, the model in DistributedDataParallel."""
    c = config
    if dist is not None:
        check_distributed(c, dist)
    device = dist.device if dist is not None else resolve_device(c.device)
    threads_note = None
    if c.num_threads:
        torch.set_num_threads(c.num_threads)
    elif dist is None and device.type == "cpu":  # torchrun gives each process its threads
        threads_note = match_threads_to_load()
    set_determinism(c.deterministic)
    if c.amp == "auto":
        c = dataclasses.replace(c, amp=job_amp(c.amp, device, dist))
    if device.type == "cpu":  # glibc would hand each step's buffers back to the kernel
        keep_freed_memory()
    seed_everything(c.seed)
    # one process per machine first: it decodes the dataset into the cache, downloads weights
    with dist.local_main_first() if dist is not None else contextlib.nullcontext():
        inputs = prepare_data(c)
        spec = inputs.spec
        model = create_model_for(c, spec, inputs.input_size)
        if c.lowres_size:
            check_lowres(c, inputs)
        init_report = (load_init(model, c, spec) if (c.init or c.pretrained) and load_init_weights
                       else None)
    params, macs = model_cost(model, spec.channels, inputs.input_size)
    if dist is not None and c.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if c.channels_last:
        model.to(memory_format=torch.channels_last)
    train_loaders: dict[int, TensorLoader] = {}
    steps_per_epoch = []
    for size, n in c.stages():
        if size not in train_loaders:
            train_loaders[size] = make_loader(c, inputs, "train", device, batch_size=size,
                                              dist=dist)
        steps_per_epoch += [len(train_loaders[size])] * n
    val_loader = make_loader(c, inputs, "val", device, dist=dist) if inputs.val else None
    optimizer = build_optimizer(model, c)
    eval_model = torch.compile(model) if c.compile else model
    train_model = eval_model
    if dist is not None:
        # schedules that freeze parameters leave some without a gradient in some epochs
        ddp = dist.wrap(model, find_unused_parameters=c.freeze != "none" or c.whiten_bias_epochs >= 0)
        train_model = torch.compile(ddp) if c.compile else ddp
        if dist.rank:  # dropout: each process its own stream (rank 0 keeps the seed's)
            torch.manual_seed(process_seed(c.seed, dist.rank))
    return Training(
        config=c, device=device, data=inputs, model=model, train_model=train_model,
        eval_model=eval_model, train_loaders=train_loaders, val_loader=val_loader,
        optimizer=optimizer, scheduler=build_scheduler(optimizer, c, steps_per_epoch),
        scaler=torch.amp.GradScaler(device.type) if c.amp == "fp16" else None,
        ema=WeightAverage(model, decay=c.ema, every=c.ema_every) if c.ema > 0 else None,
        criterion=nn.CrossEntropyLoss(label_smoothing=c.label_smoothing),
        params=params, macs=macs, init_report=init_report,
        keep_trainable=new_parameters(model, init_report.new if init_report else ()), dist=dist,
        threads_note=threads_note)


def check_distributed(config: TrainConfig, dist: Distributed) -> None:
    """The options a distributed run cannot take, as one-line errors before any work."""
    n = dist.world_size
    for size in sorted({size for size, _ in config.stages()}):
        if size % n:
            better = max(n, round(size / n) * n)
            raise UserError(f"batch size {size} is the global batch of all {n} processes and "
                            f"must be divisible by {n}; use e.g. --batch-size {better}")
    if config.sync_bn and dist.device.type != "cuda":
        raise UserError("--sync-bn needs GPUs (PyTorch's SyncBatchNorm runs on CUDA devices "
                        "only); on CPUs leave it off: each process's BatchNorm statistics are "
                        "then averaged after every epoch")


def new_parameters(model: nn.Module, names) -> tuple[str, ...]:
    """Of the tensor ``names`` an ``--init`` left new (:class:`transfer.LoadReport` ``new``),
    the model's parameters (not buffers): they must train even under ``--freeze``."""
    params = {n for n, _ in unwrap(model).named_parameters()}
    return tuple(sorted(n for n in names if n in params))
