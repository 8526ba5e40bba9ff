"""Shared helpers for the benchmark scripts: environment record and result files.

Every benchmark prints what it measured and writes one JSON file under
``benchmarks/results/`` holding the numbers plus where they came from (device, CPU,
thread count, library versions, git commit, date).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torchvision

from cnnbench.run import cpu_name  # the same CPU name and commit the run summaries record
from cnnbench.run import git_commit as run_git_commit

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    return run_git_commit() or "unknown"


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {cpu_name()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} threads)"


def environment(device: str = "cpu") -> dict:
    return {
        "device": device,
        "device_name": device_description(device),
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
    }


def result_path(name: str, device: str = "cpu", results_dir: str | Path | None = None) -> Path:
    """``<results_dir or benchmarks/results>/<name>-<cpu|cuda>.json``."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return Path(results_dir or RESULTS_DIR) / f"{name}-{kind}.json"


def write_result(name: str, payload: dict, device: str = "cpu",
                 results_dir: str | Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>-<device>.json`` (or the same name under
    ``results_dir``, e.g. for smoke runs that must not replace the committed results) and
    return its path."""
    path = result_path(name, device, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "environment": environment(device), **payload}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def run_main(main) -> None:
    """Run a benchmark's ``main()`` and exit with its status; a user's mistake (a
    :class:`cnnbench.errors.UserError`: missing data, a bad option) ends in one line, as in
    the CLI (the same guard)."""
    from cnnbench.cli import guarded

    raise SystemExit(guarded(main, Path(sys.argv[0]).name))


# --- shared by the scripts that train through cnnbench's engine --------------------------------

def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["epochs=1", "limit_train=512"]`` -> ``{"epochs": "1", "limit_train": "512"}``
    (values stay strings: ``TrainConfig`` parses them like flags)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set needs KEY=VALUE (a TrainConfig option), got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


class EnginePieces:
    """What ``cnnbench.run`` builds from a ``TrainConfig`` before its epoch loop, built with the
    same functions in the same order (seeding, data, model, loaders, optimizer, per-step
    schedule, scaler, weight average, loss, compile), so a benchmark that drives the epochs
    itself measures cnnbench's real training path.

    ``cnnbench.run`` has no public function that returns these pieces (the setup is inline in
    ``_RunState.run``); keep this in step with it.
    """

    def __init__(self, config):
        from torch import nn

        from cnnbench import run as R
        from cnnbench.optim import build_optimizer, build_scheduler

        c = self.config = config
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        R.set_determinism(c.deterministic)
        self.device = R.resolve_device(c.device)
        R.seed_everything(c.seed)
        self.run_data = R.prepare_data(c)
        self.spec = self.run_data.spec
        model = R.build_model(c, self.run_data)
        self.params, self.macs = R._model_cost(model, self.run_data)
        model.to(self.device)
        if c.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.train_loaders = {}
        steps_per_epoch = []
        for size, n in c.stages():
            if size not in self.train_loaders:
                self.train_loaders[size] = R.make_loader(c, self.run_data, "train", self.device, batch_size=size)
            steps_per_epoch += [len(self.train_loaders[size])] * n
        self.optimizer = build_optimizer(model, c)
        self.scheduler = build_scheduler(self.optimizer, c, steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type) if c.amp == "fp16" else None
        self.ema = R._technique("ema", "ema").WeightAverage(model, decay=c.ema, every=c.ema_every) if c.ema > 0 else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        self.train_model = torch.compile(model) if c.compile else model
        self.step = 0
        self.images_seen = 0

    def whiten(self) -> float:
        """Patch-whitening initialisation if the config asks for it; returns its seconds
        (training time, as in ``cnnbench.run``)."""
        if not self.config.whiten_init:
            return 0.0
        from cnnbench import run as R

        t0 = time.perf_counter()
        R._whiten(self.model, self.config, self.run_data, self.device)
        return time.perf_counter() - t0

    def train_epoch(self, epoch: int) -> dict:
        """One epoch through ``cnnbench.engine.train_one_epoch``, exactly as the run does it."""
        import warnings

        from cnnbench.engine import train_one_epoch
        from cnnbench.optim import is_per_step

        from cnnbench.run import start_epoch_schedules

        c = self.config
        loader = self.train_loaders[c.batch_size_at(epoch)]
        start_epoch_schedules(self.model, loader, c, epoch, num_classes=self.run_data.spec.num_classes)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            stats = train_one_epoch(
                self.train_model, loader, self.optimizer, self.criterion,
                scheduler=self.scheduler if is_per_step(self.scheduler) else None, scaler=self.scaler,
                amp=c.amp, device=self.device, channels_last=c.channels_last, grad_clip=c.grad_clip,
                ema=self.ema, log_every=c.log_every, on_log=None, progress=None,
                step=self.step, images_seen=self.images_seen)
        self.step, self.images_seen = stats["step"], stats["images_seen"]
        if not is_per_step(self.scheduler):  # plateau: no validation here, the training loss
            self.scheduler.step(stats["loss"])
        return stats

    def evaluate(self, split: str = "test") -> dict:
        """``cnnbench.engine.evaluate`` on ``split`` with the run's evaluation weights (the
        weight average when ``ema`` is on) and test-time augmentation."""
        from cnnbench import run as R
        from cnnbench.engine import evaluate

        c = self.config
        loader = R.make_loader(c, self.run_data, split, self.device)
        kw = dict(num_classes=self.spec.num_classes, device=self.device, amp=c.amp,
                  channels_last=c.channels_last, tta=c.tta)
        if self.ema is None:
            return evaluate(self.train_model, loader, **kw)
        with self.ema.swapped(self.model):
            return evaluate(self.train_model, loader, **kw)
