"""One training run: data, model, optimizer, epochs, checkpoints -> a run directory.

::

    summary = train_run(config, out_dir=None, resume=False, argv=None, progress=True)
    result = evaluate_checkpoint("runs/x/best.ckpt", split="test")

The run directory (default ``runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>``) holds
``config.yaml``, ``metrics.jsonl``, ``train_steps.jsonl``, ``summary.json``, TensorBoard
``events.out.tfevents.*``, ``last.ckpt``, ``best.ckpt``, ``test_predictions.json`` and, on
failure, ``error.txt`` (docs/architecture.md, Runs, lists every key).

Order of work at the end of epoch ``e``: validation, one line in ``metrics.jsonl``,
``last.ckpt`` (everything needed to continue), then ``best.ckpt`` if the validation accuracy
improved. A run killed at any moment resumes (``resume=True``) from its last completed epoch:
the lines of later epochs and steps are dropped from the logs, the RNG, optimizer, schedule,
scaler and weight-average states are restored, and the loaders are a function of (seed,
epoch), so on CPU with ``deterministic`` the resumed run ends bit-identical to one never
stopped. The test set is evaluated once, at the end, with the best weights (``val_split`` 0:
the final weights; the summary's ``tested_weights`` says which).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import socket
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import cnnbench
from cnnbench import checkpoint as ckpt
from cnnbench import transfer
from cnnbench.config import TrainConfig, dump_yaml
from cnnbench.engine import NonFiniteLoss, evaluate, train_one_epoch
from cnnbench.errors import UserError
from cnnbench.optim import build_optimizer, build_scheduler, current_lr, is_per_step
from cnnbench.training.rundir import (RESUMABLE_CHANGES, append_jsonl, default_run_dir, now,
                                     read_summary, save_misclassified, saved_config,
                                     truncate_jsonl, write_json)

WHITEN_IMAGES = 5000  # training images used for the whitening statistics


# --- small helpers --------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; ``cuda`` without a GPU -> UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device cuda asked for, but no CUDA GPU is available; use --device cpu "
                        "or --device auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(on: bool) -> None:
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


def git_commit() -> str | None:
    """The short commit of the cnnbench checkout, with ``-dirty`` when tracked files are
    modified; ``None`` outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=here, timeout=5)
        if out.returncode != 0 or not out.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=here, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- data -----------------------------------------------------------------------------------

@dataclasses.dataclass
class RunData:
    """The tensors of a run after splitting and limiting, and how to normalise them."""

    spec: Any
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]

    @property
    def split(self) -> dict[str, int]:
        return {"train": len(self.train[1]), "val": len(self.val[1]) if self.val else 0,
                "test": len(self.test[1])}


def _subset(indices: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """``limit`` of ``indices`` drawn at random (seeded, sorted), or all when no limit applies."""
    if not limit or limit >= len(indices):
        return indices
    gen = torch.Generator().manual_seed(seed)
    return indices[torch.randperm(len(indices), generator=gen)[:limit]].sort().values


def prepare_data(config: TrainConfig) -> RunData:
    """Load the dataset, split off validation (seeded by ``split_seed``), apply the limits."""
    from cnnbench import data

    ds = data.load_dataset(config.dataset, data_dir=config.data_dir)
    spec = ds.spec
    train_idx, val_idx = data.split_indices(len(ds.train_y), config.val_split, config.split_seed)
    if config.val_split > 0 and len(val_idx) == 0:
        raise UserError(f"val_split {config.val_split} leaves no validation image of "
                        f"{len(ds.train_y)}; use a larger split or 0")
    # Limits take a seeded random subset, never the first N: datasets stored in class order
    # (image folders, cifar10_jpeg) would otherwise give a single-class subset.
    train_idx = _subset(train_idx, config.limit_train, config.split_seed)
    val_idx = _subset(val_idx, config.limit_eval, config.split_seed + 1)
    test_x, test_y = ds.test_x, ds.test_y
    if config.limit_eval:
        test_idx = _subset(torch.arange(len(test_y)), config.limit_eval, config.split_seed + 2)
        test_x, test_y = test_x[test_idx], test_y[test_idx]
    if len(train_idx) == 0:
        raise UserError(f"no training images left (dataset {config.dataset}, val_split "
                        f"{config.val_split}, limit_train {config.limit_train})")
    val = (ds.train_x[val_idx], ds.train_y[val_idx]) if len(val_idx) else None
    mean = tuple(config.mean) if config.mean is not None else tuple(spec.mean)
    std = tuple(config.std) if config.std is not None else tuple(spec.std)
    if len(mean) != spec.channels or len(std) != spec.channels:
        raise UserError(f"mean/std need {spec.channels} values for {spec.name} (one per channel), "
                        f"got {len(mean)}/{len(std)}")
    size = (config.resize, config.resize) if config.resize else tuple(spec.image_size)
    return RunData(spec=spec, train=(ds.train_x[train_idx], ds.train_y[train_idx]), val=val,
                   test=(test_x, test_y), mean=mean, std=std, input_size=size)


def make_loader(config: TrainConfig, run_data: RunData, split: str, device: torch.device,
                batch_size: int | None = None):
    """A TensorLoader over one split: training (shuffled, augmented) or evaluation."""
    from cnnbench.data import TensorLoader

    x, y = getattr(run_data, split)
    training = split == "train"
    if batch_size is None:
        batch_size = config.eval_batch_size or max(config.batch_size, 256)
    return TensorLoader(x, y, batch_size=batch_size, shuffle=training, seed=config.seed,
                        mean=run_data.mean, std=run_data.std,
                        augment=config.augment if training else "none",
                        resize=config.resize, device=device, drop_last=False,
                        channels_last=config.channels_last)


# --- model ----------------------------------------------------------------------------------

def build_model(config: TrainConfig, run_data: RunData) -> nn.Module:
    """The model for ``config`` on ``run_data``'s dataset (CPU, float32, train mode)."""
    from cnnbench.models import create_model

    spec = run_data.spec
    size = run_data.input_size
    return create_model(config.model, num_classes=spec.num_classes, in_chans=spec.channels,
                        input_size=size if size[0] != size[1] else size[0],
                        drop_rate=config.dropout, stem=config.stem, **config.model_kwargs)


def start_epoch_schedules(model: nn.Module, loader, config: TrainConfig, epoch: int, *,
                          num_classes: int | None = None) -> str | None:
    """Put ``model`` and its training ``loader`` in the state of (0-based) ``epoch``: the
    freeze schedule, the whitening layer's schedule (``whiten_bias_epochs``), the loader's
    epoch (augmentation streams) and size (progressive resizing). Every setting follows from
    the epoch number alone, so a resumed run is in the same state. Returns the freeze
    schedule's log line, if any."""
    change = transfer.apply_freeze_schedule(model, config.freeze, config.unfreeze_at, epoch,
                                            num_classes=num_classes)
    if config.whiten_bias_epochs >= 0:
        whitening = _technique("whitening", "whiten_bias_epochs")
        conv = whitening.find_whitening_conv(model)
        # The bias trains in its first epochs unless the freeze schedule froze it (freezing
        # runs from epoch 0 to unfreeze_at, so requires_grad still says so here).
        bias = conv.bias is not None and conv.bias.requires_grad and epoch < config.whiten_bias_epochs
        whitening.set_whitening_trainable(conv, weight=False, bias=bias)
    loader.set_epoch(epoch)
    loader.resize = config.lowres_size if epoch < config.lowres_epochs else config.resize
    return change


def _check_lowres(config: TrainConfig, run_data: RunData) -> None:
    """A one-line error unless the model built for ``run_data`` also takes
    ``config.lowres_size`` inputs (progressive resizing); checked on the meta device."""
    spec, size = run_data.spec, config.lowres_size
    if size >= min(run_data.input_size):
        raise UserError(f"--lowres-size {size} is not smaller than the training images "
                        f"({'x'.join(map(str, run_data.input_size))}); progressive resizing needs "
                        f"a smaller size, e.g. --lowres-size {max(1, 3 * min(run_data.input_size) // 4)}")
    with torch.device("meta"):
        probe = build_model(config, run_data)
        try:
            probe(torch.empty(2, spec.channels, size, size))
        except (RuntimeError, UserError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"--lowres-size {size} does not fit {config.model} built for "
                f"{'x'.join(map(str, run_data.input_size))} inputs ({reason}); choose a larger "
                f"--lowres-size, or a model that pools globally (e.g. fastnet, resnet18)") from None


def load_init(model: nn.Module, config: TrainConfig, spec):
    """Start ``model`` from ``config.init``, or with ``config.pretrained`` from torchvision's
    ImageNet weights; returns the :class:`cnnbench.transfer.LoadReport` (README: Fine-tuning)."""
    from cnnbench import transfer

    source = config.init or str(transfer.pretrained_weights_path(config.model))
    return transfer.load_init_weights(model, source, num_classes=spec.num_classes,
                                      in_chans=spec.channels, dataset=config.dataset,
                                      head=config.init_head)


def _model_cost(model: nn.Module, run_data: RunData) -> tuple[int, int | None]:
    from cnnbench.models.profile import count_macs, count_params

    params = count_params(model)
    try:
        macs = int(count_macs(model, (run_data.spec.channels, *run_data.input_size)))
    except Exception as exc:  # noqa: BLE001 - the count is informative, never fatal
        warnings.warn(f"cnnbench: could not count MACs of {type(model).__name__}: {exc}")
        macs = None
    return params, macs


def _technique(module: str, option: str):
    """Import ``cnnbench.<module>``, or a UserError that says the option is not available."""
    import importlib

    try:
        return importlib.import_module(f"cnnbench.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"cnnbench.{module}":
            raise
        raise UserError(f"{option} is not available yet (cnnbench.{module} is missing in this "
                        f"version); leave {option} off") from None


def _whiten(model: nn.Module, config: TrainConfig, run_data: RunData, device: torch.device) -> None:
    """Patch-whitening initialisation of the first conv from up to WHITEN_IMAGES training
    images spread evenly over the training set (not the first ones: some datasets are stored
    in class order), as the model sees them (normalised, resized; no augmentation)."""
    from cnnbench.data import TensorLoader

    whitening = _technique("whitening", "whiten_init")
    x, y = run_data.train
    pick = torch.linspace(0, len(y) - 1, min(WHITEN_IMAGES, len(y))).long()
    loader = TensorLoader(x[pick], y[pick], batch_size=len(pick),
                          shuffle=False, mean=run_data.mean, std=run_data.std, augment="none",
                          resize=config.resize, device=device)
    images = next(iter(loader))[0]
    whitening.init_patch_whitening(whitening.find_whitening_conv(model), images)


# --- console output -------------------------------------------------------------------------

class Console:
    """Progress of a run: tqdm bars on a terminal, plain log lines otherwise, or nothing."""

    PLAIN_INTERVAL_S = 30.0

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self._last_line = 0.0

    def start_epoch(self, epoch: int, epochs: int, images: int) -> None:
        self.epoch, self.epochs, self.images, self.done = epoch, epochs, images, 0
        self.t0 = self._last_line = time.perf_counter()
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=images, unit="img", unit_scale=True, leave=False,
                            desc=f"epoch {epoch}/{epochs}", file=self.stream, dynamic_ncols=True)

    def update(self, images: int) -> None:
        self.done += images
        if self.bar is not None:
            self.bar.update(images)

    def log(self, **metrics: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
        elif self.enabled and time.perf_counter() - self._last_line >= self.PLAIN_INTERVAL_S:
            self._last_line = time.perf_counter()
            elapsed = self._last_line - self.t0
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.images - self.done) / rate if rate > 0 else float("nan")
            values = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self.line(f"epoch {self.epoch}/{self.epochs} {self.done}/{self.images} img {values} "
                      f"{rate:.0f} img/s ETA {eta:.0f} s")

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


# --- the run --------------------------------------------------------------------------------

def _prepare_run_dir(config: TrainConfig | None, out_dir, resume: bool) -> tuple[TrainConfig, Path]:
    """The run's config and directory; on resume the saved config (changes checked)."""
    if resume:
        target = out_dir or (config.out if config is not None else None)
        if target is None:
            raise UserError("--resume needs the run directory: --resume DIR (or --out DIR)")
        run_dir = Path(target)
        saved = saved_config(run_dir)
        if config is None:
            return saved, run_dir
        changed = [f.name for f in dataclasses.fields(TrainConfig)
                   if f.name not in RESUMABLE_CHANGES
                   and getattr(config, f.name) != getattr(saved, f.name)]
        if changed:
            raise UserError(f"--resume continues {run_dir} with its saved config, but these "
                            f"options differ: {', '.join(changed)}; drop them (or start a new "
                            f"run with another --out)")
        keep = {k: getattr(config, k) for k in RESUMABLE_CHANGES if k != "out"}
        return saved.replace(**keep), run_dir
    if config is None:
        raise UserError("train_run needs a config unless it resumes a run")
    run_dir = Path(out_dir or config.out or default_run_dir(config))
    for name in ("last.ckpt", "best.ckpt"):
        if (run_dir / name).exists():
            raise UserError(f"{run_dir} already holds a run ({name}); pass --resume to continue "
                            f"it, or choose another --out")
    return config, run_dir


def _open_run_dir(run_dir: Path, config: TrainConfig, fresh: bool) -> None:
    """Create the run directory (a fresh run: drop the logs of an earlier attempt that never
    completed an epoch) and write the resolved ``config.yaml``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        for name in ("metrics.jsonl", "train_steps.jsonl", "summary.json", "error.txt",
                     "test_predictions.json"):
            (run_dir / name).unlink(missing_ok=True)
        for events in run_dir.glob("events.out.tfevents.*"):
            events.unlink()
    else:
        (run_dir / "error.txt").unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(config))


def train_run(config: TrainConfig | None, out_dir: str | Path | None = None, resume: bool = False,
              argv: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one run into its directory and return its summary (also in ``summary.json``).

    Args:
        config: the resolved config (:func:`cnnbench.config.resolve.resolve_config`). With ``resume``
            it may be ``None`` (use the saved one) or must equal the saved one except for
            :data:`RESUMABLE_CHANGES`.
        out_dir: the run directory (else ``config.out``, else ``runs/<model>-<dataset>-<time>``).
        resume: continue the run in ``out_dir`` from its ``last.ckpt`` (a finished run returns
            its summary; a run that never completed an epoch starts over).
        argv: the command line, recorded in the summary.
        progress: show progress (tqdm on a terminal, plain lines otherwise); False = silent.

    Raises:
        UserError: bad input, or the loss became NaN/Inf (``error.txt`` and a summary with
            status ``failed`` are written; ``last.ckpt`` keeps the last good epoch).
    """
    config, run_dir = _prepare_run_dir(config, out_dir, resume)
    previous = read_summary(run_dir) if resume else None
    if previous and previous.get("status") == "finished":
        return previous
    console = Console(progress)
    state = _RunState(config=config, run_dir=run_dir, console=console,
                      argv=list(argv) if argv is not None else list(sys.argv),
                      resume=resume and (run_dir / "last.ckpt").exists())
    try:
        return state.run()
    except BaseException as exc:
        state.fail(exc)
        raise
    finally:
        state.close()


@dataclasses.dataclass
class _RunState:
    config: TrainConfig
    run_dir: Path
    console: Console
    argv: list[str]
    resume: bool
    writer: Any = None
    train_loaders: list = dataclasses.field(default_factory=list)
    summary: dict = dataclasses.field(default_factory=dict)
    last_good_epoch: int = 0

    # -- setup ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        c = self.config
        started = now()
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        set_determinism(c.deterministic)
        device = resolve_device(c.device)
        seed_everything(c.seed)
        run_data = prepare_data(c)  # data and model first: a bad input leaves no directory
        spec = run_data.spec
        model = build_model(c, run_data)
        if c.lowres_size:
            _check_lowres(c, run_data)
        # Initial weights are loaded before the run directory exists: a bad --init or
        # --pretrained leaves nothing behind.
        init_report = load_init(model, c, spec) if (c.init or c.pretrained) and not self.resume else None
        _open_run_dir(self.run_dir, c, fresh=not self.resume)
        self.summary = self._base_summary(device, started)
        params, macs = _model_cost(model, run_data)
        self.summary.update(
            params=params, macs=macs, flops=2 * macs if macs is not None else None,
            stem=getattr(model, "stem", None), input_size=[spec.channels, *run_data.input_size],
            classes=list(spec.classes), split=run_data.split)
        if init_report is not None:
            self.summary.update(init=init_report.source, init_report=init_report.to_dict())
            self.console.line(init_report.text())
        elif self.resume:  # keep the report of the run's start
            self.summary["init_report"] = (read_summary(self.run_dir) or {}).get("init_report")
        model.to(device)
        if c.channels_last:
            model.to(memory_format=torch.channels_last)

        stages = c.stages()
        train_loaders: dict[int, Any] = {}
        steps_per_epoch = []
        for size, n in stages:
            if size not in train_loaders:
                train_loaders[size] = make_loader(c, run_data, "train", device, batch_size=size)
            steps_per_epoch += [len(train_loaders[size])] * n
        val_loader = make_loader(c, run_data, "val", device) if run_data.val else None
        self.train_loaders = list(train_loaders.values())

        optimizer = build_optimizer(model, c)
        scheduler = build_scheduler(optimizer, c, steps_per_epoch)
        scaler = torch.amp.GradScaler(device.type) if c.amp == "fp16" else None
        ema = None
        if c.ema > 0:
            ema = _technique("ema", "ema").WeightAverage(model, decay=c.ema, every=c.ema_every)
        criterion = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        train_model = torch.compile(model) if c.compile else model

        meta = {"best_val_acc": None, "best_epoch": None, "epochs_since_best": 0,
                "train_time_s": 0.0, "eval_time_s": 0.0, "images_seen": 0,
                "stopped_early": False}
        start_epoch, step = 0, 0
        if self.resume:
            start_epoch, step, meta = self._restore(model, optimizer, scheduler, scaler, ema)
        elif c.whiten_init:
            t0 = time.perf_counter()
            _whiten(model, c, run_data, device)
            meta["train_time_s"] += time.perf_counter() - t0
        self.last_good_epoch = start_epoch
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=step if self.resume else None)

        # -- epochs ------------------------------------------------------------------------
        metrics_path = self.run_dir / "metrics.jsonl"
        steps_path = self.run_dir / "train_steps.jsonl"

        def on_log(global_step: int, images_seen: int, loss: float) -> None:
            append_jsonl(steps_path, {"step": global_step, "images_seen": images_seen,
                                       "train_loss": loss})
            self.writer.add_scalar("train/loss_steps", loss, global_step)

        for epoch in range(start_epoch, c.epochs):
            if meta["stopped_early"]:
                break
            batch_size = c.batch_size_at(epoch)
            loader = train_loaders[batch_size]
            change = start_epoch_schedules(model, loader, c, epoch, num_classes=spec.num_classes)
            if change:
                self.console.line(change)
            lr = current_lr(optimizer)
            self.console.start_epoch(epoch + 1, c.epochs, loader.num_samples)
            with warnings.catch_warnings():  # fp16 may skip a step: the schedule still advances
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                stats = train_one_epoch(
                    train_model, loader, optimizer, criterion,
                    scheduler=scheduler if is_per_step(scheduler) else None, scaler=scaler,
                    amp=c.amp, device=device, channels_last=c.channels_last,
                    grad_clip=c.grad_clip, ema=ema, log_every=c.log_every, on_log=on_log,
                    progress=self.console, step=step, images_seen=meta["images_seen"])
            self.console.end_epoch()
            step, meta["images_seen"] = stats["step"], stats["images_seen"]
            meta["train_time_s"] += stats["time_s"]

            val = None
            if val_loader is not None:
                t0 = time.perf_counter()
                val = self._evaluate(train_model, val_loader, spec.num_classes, ema, device)
                meta["eval_time_s"] += time.perf_counter() - t0
            if not is_per_step(scheduler):
                scheduler.step(val["loss"] if val else stats["loss"])

            record = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
                      "val_loss": val["loss"] if val else None, "val_acc": val["acc"] if val else None,
                      "lr": lr, "batch_size": batch_size, "epoch_time_s": stats["time_s"],
                      "train_images_per_s": stats["images_per_s"], "images_seen": meta["images_seen"]}
            append_jsonl(metrics_path, record)
            self._tensorboard(record, step)
            self.console.line(self._epoch_line(record))

            improved = val is not None and (meta["best_val_acc"] is None or val["acc"] > meta["best_val_acc"])
            if improved:
                meta.update(best_val_acc=val["acc"], best_epoch=epoch + 1, epochs_since_best=0)
            elif val is not None:
                meta["epochs_since_best"] += 1
            if c.early_stop and val is not None and meta["epochs_since_best"] >= c.early_stop:
                meta["stopped_early"] = True
            eval_weights = self._eval_weights(model, ema)
            self._save_last(model, eval_weights, optimizer, scheduler, scaler, ema, epoch + 1, step, meta)
            if improved:
                self._save_best(eval_weights, epoch + 1, step, meta)
            self.last_good_epoch = epoch + 1
        epochs_completed = self.last_good_epoch

        # -- test once, with the best weights ---------------------------------------------
        if val_loader is None:  # no selection possible: the final weights are tested
            self._save_best(self._eval_weights(model, ema), epochs_completed, step, meta)
        best = ckpt.load_checkpoint(self.run_dir / "best.ckpt")
        test_model = build_model(c, run_data)
        ckpt.unwrap(test_model).load_state_dict(best["model"])
        test_model.to(device)
        if c.channels_last:
            test_model.to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        test = evaluate(test_model, make_loader(c, run_data, "test", device),
                        num_classes=spec.num_classes, device=device, amp=c.amp,
                        channels_last=c.channels_last, tta=c.tta, return_predictions=True)
        test_time = time.perf_counter() - t0
        meta["eval_time_s"] += test_time
        write_json(self.run_dir / "test_predictions.json",
                    {"predictions": test["predictions"].tolist(), "targets": test["targets"].tolist(),
                     "tested_weights": "best" if val_loader is not None else "final"})
        save_misclassified(self.run_dir, run_data.test[0], test["predictions"], test["targets"])
        self.writer.add_scalar("test/acc", test["acc"], step)
        self.writer.add_scalar("test/loss", test["loss"], step)

        train_time = meta["train_time_s"]
        self.summary.update(
            epochs_completed=epochs_completed, train_time_s=train_time,
            eval_time_s=meta["eval_time_s"], test_time_s=test_time,
            train_images_per_s=meta["images_seen"] / train_time if train_time > 0 else None,
            images_seen=meta["images_seen"], steps=step,
            best_val_acc=meta["best_val_acc"], best_epoch=meta["best_epoch"],
            tested_weights="best" if val_loader is not None else "final",
            stopped_early=meta["stopped_early"],
            test_acc=test["acc"], test_loss=test["loss"], per_class_test_acc=test["per_class_acc"],
            confusion_matrix=test["confusion_matrix"], status="finished", finished_at=now())
        write_json(self.run_dir / "summary.json", self.summary)
        self.console.line(f"test accuracy {100 * test['acc']:.2f}% (loss {test['loss']:.4f}, "
                          f"{'best' if val_loader is not None else 'final'} weights"
                          f"{', epoch ' + str(meta['best_epoch']) if meta['best_epoch'] else ''}); "
                          f"training {train_time:.1f} s; run directory {self.run_dir}")
        return self.summary

    # -- pieces ----------------------------------------------------------------------------
    def _base_summary(self, device: torch.device, started: str) -> dict[str, Any]:
        import torchvision

        c = self.config
        return {
            "name": c.name or self.run_dir.name, "run_dir": str(self.run_dir), "model": c.model, "dataset": c.dataset,
            "stem": None, "params": None, "macs": None, "flops": None, "input_size": None,
            "seed": c.seed, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "epochs": c.epochs, "epochs_completed": 0, "train_time_s": None, "eval_time_s": None,
            "train_images_per_s": None, "best_val_acc": None, "best_epoch": None,
            "test_acc": None, "test_loss": None, "per_class_test_acc": None,
            "confusion_matrix": None, "classes": None, "split": None,
            "limited": bool(c.limit_train or c.limit_eval), "limit_train": c.limit_train,
            "limit_eval": c.limit_eval, "recipe": c.recipe, "profile": c.profile, "tta": c.tta,
            "init": c.init, "pretrained": c.pretrained, "init_report": None,
            "freeze": c.freeze, "unfreeze_at": c.unfreeze_at, "head_lr": c.head_lr,
            "backbone_lr": c.backbone_lr, "amp": c.amp, "channels_last": c.channels_last, "compile": c.compile,
            "deterministic": c.deterministic,
            "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "cnnbench_version": cnnbench.__version__, "git_commit": git_commit(),
            "command": " ".join(self.argv), "status": "running", "started_at": started,
            "finished_at": None, "hostname": socket.gethostname(), "cpu": cpu_name(),
            "num_threads": torch.get_num_threads(),
        }

    def _evaluate(self, model, loader, num_classes, ema, device) -> dict:
        c = self.config
        if ema is None:
            return evaluate(model, loader, num_classes=num_classes, device=device, amp=c.amp,
                            channels_last=c.channels_last, tta=c.tta)
        with ema.swapped(model):
            return evaluate(model, loader, num_classes=num_classes, device=device, amp=c.amp,
                            channels_last=c.channels_last, tta=c.tta)

    @staticmethod
    def _eval_weights(model, ema) -> dict[str, torch.Tensor]:
        if ema is None:
            return ckpt.model_state(model)
        with ema.swapped(model):
            return ckpt.model_state(model)

    def _save_last(self, model, eval_weights, optimizer, scheduler, scaler, ema, epoch, step, meta):
        training = {
            "model": ckpt.model_state(model) if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema.state_dict() if ema is not None else None,
            "rng": ckpt.capture_rng_state(),
            # the loaders' draws are a function of (seed, epoch): this is the next epoch's
            "loader": {"seed": self.config.seed, "epoch": epoch},
        }
        ckpt.save_checkpoint(self.run_dir / "last.ckpt", {
            "kind": "last", "config": self.config.to_dict(), "epoch": epoch, "step": step,
            "model": eval_weights, "meta": dict(meta), "training": training})

    def _save_best(self, eval_weights, epoch, step, meta):
        ckpt.save_checkpoint(self.run_dir / "best.ckpt", {
            "kind": "best", "config": self.config.to_dict(), "epoch": epoch, "step": step,
            "model": eval_weights, "meta": dict(meta)})

    def _restore(self, model, optimizer, scheduler, scaler, ema):
        state = ckpt.load_checkpoint(self.run_dir / "last.ckpt")
        training = state.get("training")
        if state.get("kind") != "last" or not training:
            raise UserError(f"{self.run_dir / 'last.ckpt'} holds no training state; it cannot "
                            f"be resumed")
        try:
            ckpt.unwrap(model).load_state_dict(training["model"] if training["model"] is not None
                                               else state["model"])
            optimizer.load_state_dict(training["optimizer"])
            scheduler.load_state_dict(training["scheduler"])
            if scaler is not None and training["scaler"] is not None:
                scaler.load_state_dict(training["scaler"])
            if ema is not None:
                if training["ema"] is None:
                    raise UserError("the checkpoint has no weight average but the config asks for one")
                ema.load_state_dict(training["ema"])
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.run_dir / 'last.ckpt'} does not fit this run's model/optimizer "
                            f"({first}); it cannot be resumed") from None
        epoch, step, meta = int(state["epoch"]), int(state["step"]), dict(state["meta"])
        truncate_jsonl(self.run_dir / "metrics.jsonl", "epoch", epoch)
        truncate_jsonl(self.run_dir / "train_steps.jsonl", "step", step)
        best_path = self.run_dir / "best.ckpt"
        if meta.get("best_epoch") == epoch:  # killed between last.ckpt and best.ckpt
            best_ok = best_path.exists() and ckpt.load_checkpoint(best_path)["epoch"] == epoch
            if not best_ok:
                self._save_best(state["model"], epoch, step, meta)
        ckpt.restore_rng_state(training["rng"])
        for loader in self.train_loaders:
            loader.load_state_dict(training["loader"])
        self.console.line(f"resuming {self.run_dir} after epoch {epoch} (step {step})")
        return epoch, step, meta

    def _tensorboard(self, record: dict, step: int) -> None:
        w = self.writer
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            if record[key] is not None:
                split, name = key.split("_")
                w.add_scalar(f"{split}/{name}", record[key], step)
        w.add_scalar("train/lr", record["lr"], step)
        w.add_scalar("train/images_per_s", record["train_images_per_s"], step)
        w.add_scalar("train/epoch", record["epoch"], step)

    def _epoch_line(self, r: dict) -> str:
        val = (f" | val loss {r['val_loss']:.4f} acc {100 * r['val_acc']:.2f}%"
               if r["val_acc"] is not None else "")
        return (f"epoch {r['epoch']}/{self.config.epochs}: train loss {r['train_loss']:.4f} "
                f"acc {100 * r['train_acc']:.2f}%{val} | lr {r['lr']:.3g} | "
                f"{r['epoch_time_s']:.1f} s, {r['train_images_per_s']:.0f} img/s")

    # -- failure ---------------------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """Record a failed run: ``error.txt`` and a summary with status ``failed``."""
        self.console.end_epoch()
        if isinstance(exc, NonFiniteLoss):
            where = (f"the last good checkpoint is {self.run_dir / 'last.ckpt'} (epoch "
                     f"{self.last_good_epoch})" if self.last_good_epoch else "no epoch completed")
            exc.args = (f"{exc.args[0]}; run stopped, {where}",)
        if isinstance(exc, KeyboardInterrupt):
            text = "interrupted (KeyboardInterrupt); continue with --resume\n"
        elif isinstance(exc, UserError):
            text = f"{exc}\n"
        else:
            text = "".join(traceback.format_exception(exc))
        if not self.run_dir.is_dir():  # failed before the run started: nothing to record
            return
        try:
            (self.run_dir / "error.txt").write_text(text)
            if self.summary:
                self.summary.update(status="failed", error=text.strip().splitlines()[-1],
                                    epochs_completed=self.last_good_epoch, finished_at=now())
                write_json(self.run_dir / "summary.json", self.summary)
        except OSError:
            pass

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- evaluation of a checkpoint -------------------------------------------------------------

def evaluate_checkpoint(path: str | Path, split: str = "test", *, data_dir: str | None = None,
                        device: str | None = None, batch_size: int | None = None,
                        tta: str | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on its run's ``test`` or ``val`` split, rebuilt from the config
    stored in it (same split seed, limits and normalisation), so ``best.ckpt`` reproduces the
    summary's ``test_acc`` exactly. Returns :func:`cnnbench.engine.evaluate`'s dict plus
    ``split``, ``checkpoint``, ``epoch``, ``model``, ``dataset``."""
    if split not in ("test", "val"):
        raise UserError(f"split must be test or val, got {split!r}")
    state = ckpt.load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(state["config"], f"config in {path}")
    except UserError as exc:
        raise UserError(f"checkpoint {path} has an unusable config: {exc}") from None
    changes = {k: v for k, v in {"data_dir": data_dir, "device": device,
                                  "eval_batch_size": batch_size, "tta": tta}.items() if v is not None}
    config = config.replace(**changes)
    dev = resolve_device(config.device)
    run_data = prepare_data(config)
    if split == "val" and run_data.val is None:
        raise UserError(f"the run of {path} has no validation split (val_split 0); use --split test")
    model = build_model(config, run_data)
    try:
        ckpt.unwrap(model).load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"the weights in {path} do not fit model {config.model} "
                        f"({str(exc).splitlines()[0][:160]})") from None
    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    result = evaluate(model, make_loader(config, run_data, split, dev),
                      num_classes=run_data.spec.num_classes, device=dev, amp=config.amp,
                      channels_last=config.channels_last, tta=config.tta)
    return {**result, "split": split, "checkpoint": str(path), "epoch": state["epoch"],
            "model": config.model, "dataset": config.dataset, "tta": config.tta}
