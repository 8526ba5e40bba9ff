"""Training and inference images/s of every registered model at 1x28x28 and 3x32x32.

For each model (``cnnbench.models.list_models()``, 10 classes, ``stem="auto"``) and input:

* ``params``, ``macs`` (``cnnbench.models.profile.count_macs``, one image, forward);
* **plain PyTorch** training: a bare loop over one pre-made batch of already-normalised random
  tensors: forward, cross-entropy, backward, ``torch.optim.SGD`` step;
* **cnnbench** training: the same model fed by ``cnnbench.data.TensorLoader`` from random uint8
  tensors (normalised on the fly) through ``cnnbench.training.loop.train_one_epoch`` with
  ``cnnbench.training.optim.build_optimizer``/``build_scheduler`` (SGD, momentum 0.9), i.e. the path
  ``cnnbench train`` runs. ``ratio_vs_plain``: cnnbench's speed over plain's (see Timing; target for
  compute-bound models: >= 0.95 on the CPU (issue #33; 0.7 before), >= 0.9 on CUDA; the JSON's ``target_ratio_vs_plain``
  says which applied and ``all_compute_bound_met`` whether every measured one met it);
* inference through ``cnnbench.training.evaluation.evaluate`` (``torch.inference_mode``, eval mode);
* achieved GFLOP/s: training FLOPs = 3 x forward FLOPs = 6 x MACs per image, inference
  2 x MACs per image (convolutions and matrix products only, as ``count_macs`` counts).

Timing: warm-up steps, then as many steps as fit in ``--budget-s`` seconds (at least
``--min-steps``); then ``--repeats`` rounds (default 5) of plain and cnnbench training back to
back, in turns plain-cnnbench, cnnbench-plain, ... (drift favours neither). images/s: each
path's best (noise on a shared machine only slows); ``ratio_vs_plain``: the median of the
rounds' ratios (``ratio_rounds``), each taken at one machine speed (this CPU drifts by 10% and
more within a minute, so the two best times can come from different minutes). A model whose
single step is slower than half the budget (resnet101/152 on 2 cores) gets one warm-up step on
each path and ``--min-steps`` timed steps. The CPU run: 27 minutes on 2 cores in bf16 (1,596 s on
2026-12-06).

Batch (``--batch-size auto``, see :func:`plan`): 64 on the CPU (as measured since the start);
on CUDA 1024, a batch that keeps an H200 busy for these 28-32 px models, halved for a model that
runs out of memory at it (down to 64; each row records its ``batch_size``). ``--max-total-s``
caps the whole run: measurements not started by then are listed under ``not_measured`` and
``complete`` is false.

CPU: ``--channels-last auto`` times plain training of ``--probe-model`` in both memory formats
and uses the faster one for every model (the JSON's ``settings`` says which); fp32 unless
``--amp bf16``, or ``--amp auto``: bf16 where the CPU computes it natively (AVX512-BF16 or AMX)
and was measured to train faster in it, as ``cnnbench train --amp auto`` decides. CUDA: bf16 autocast and channels_last, ``--compile`` adds
``torch.compile`` (to both paths). ``--name`` names the result file (``model_throughput-bf16``
for the README's bf16 table).

Run: ``.venv/bin/python benchmarks/model_throughput.py`` (``--models 'resnet*'`` to select). On a
lent GPU benchmarks/gpu_speed.py runs it (``--device cuda --max-total-s ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from common import run_main, write_result

INPUTS = {"1x28x28": (1, 28, 28), "3x32x32": (3, 32, 32)}
MEAN_STD = {1: ((0.5,), (0.25,)), 3: ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))}
LR = 1e-3  # small: random labels, BatchNorm-free models (VGG, AlexNet) must stay finite
COMPUTE_BOUND_MACS = 50e6  # models at or above this many MACs per image count as compute-bound
TARGET_RATIO = {"cpu": 0.95, "cuda": 0.9}  # cnnbench / plain PyTorch, compute-bound models
AUTO_BATCH = {"cpu": 64, "cuda": 1024}
MIN_CUDA_BATCH = 64


def plan(device_type: str, batch_size: str | int = "auto") -> tuple[int, float]:
    """(batch size, target ratio vs plain PyTorch) for ``device_type`` ("cpu" or "cuda"):
    ``batch_size`` "auto" -> 64 on the CPU, 1024 on CUDA; a number is taken as given."""
    kind = "cuda" if str(device_type).startswith("cuda") else "cpu"
    if str(batch_size).strip().lower() == "auto":
        batch = AUTO_BATCH[kind]
    else:
        batch = int(batch_size)
        if batch < 1:
            raise SystemExit(f"--batch-size must be >= 1 or auto, got {batch_size!r}")
    return batch, TARGET_RATIO[kind]


def smaller_batches(batch: int, device_type: str) -> list[int]:
    """The batches to try, largest first: on CUDA ``batch`` halved down to 64 (a model that
    runs out of memory gets the next one); on the CPU just ``batch``."""
    out = [batch]
    while str(device_type).startswith("cuda") and out[-1] // 2 >= MIN_CUDA_BATCH:
        out.append(out[-1] // 2)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_model(name: str, shape: tuple[int, int, int], device: torch.device, channels_last: bool):
    from cnnbench.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=shape[0], input_size=shape[1], stem="auto")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def plain_loss(model, x, y):
    out = model(x)
    if isinstance(out, (tuple, list)):  # auxiliary heads (GoogLeNet): the same loss as the engine's
        return F.cross_entropy(out[0], y) + float(getattr(model, "aux_weight", 0.3)) * sum(
            F.cross_entropy(a, y) for a in out[1:])
    return F.cross_entropy(out, y)


class Plain:
    """The bare training loop: one pre-made normalised batch, SGD with momentum."""

    def __init__(self, model, shape, batch, device, channels_last, amp, compiled):
        self.model = torch.compile(model) if compiled else model
        self.raw = model
        self.opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn((batch, *shape), generator=g).to(device)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch,), generator=g).to(device)
        self.device, self.amp = device, amp

    def steps(self, n: int) -> float:
        self.raw.train()
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            self.opt.zero_grad(set_to_none=True)
            with autocast(self.device, self.amp):
                loss = plain_loss(self.model, self.x, self.y)
            loss.backward()
            self.opt.step()
        sync(self.device)
        return time.perf_counter() - t0


class Cnnbench:
    """cnnbench's training path: TensorLoader over uint8 images + loop.train_one_epoch with
    the optimizer and per-step schedule that cnnbench.training.optim builds from a TrainConfig."""

    def __init__(self, model, shape, batch, device, channels_last, amp, compiled):
        from torch import nn

        from cnnbench.config import TrainConfig
        from cnnbench.training.optim import build_optimizer, build_scheduler

        self.config = TrainConfig(optimizer="sgd", lr=LR, momentum=0.9, weight_decay=5e-4, scheduler="none",
                                  batch_size=batch, amp=amp, channels_last=channels_last)
        self.raw = model
        self.model = torch.compile(model) if compiled else model
        self.opt = build_optimizer(model, self.config)
        self.sched = build_scheduler(self.opt, self.config, [1_000_000])
        self.crit = nn.CrossEntropyLoss()
        self.shape, self.batch, self.device = shape, batch, device
        self.channels_last, self.amp = channels_last, amp
        self.mean, self.std = MEAN_STD[shape[0]]
        self.epoch = 0
        self._loaders = {}

    def loader(self, n_batches: int, shuffle: bool = True):
        from cnnbench.data import TensorLoader

        key = (n_batches, shuffle)
        if key not in self._loaders:
            g = torch.Generator().manual_seed(1)
            n = n_batches * self.batch
            x = torch.randint(0, 256, (n, *self.shape), generator=g, dtype=torch.uint8)
            y = torch.randint(0, 10, (n,), generator=g)
            self._loaders[key] = TensorLoader(x, y, batch_size=self.batch, shuffle=shuffle, seed=0, mean=self.mean,
                                              std=self.std, augment="none", device=self.device,
                                              channels_last=self.channels_last)
        return self._loaders[key]

    def steps(self, n: int) -> float:
        from cnnbench.training.loop import train_one_epoch

        loader = self.loader(n)
        loader.set_epoch(self.epoch)
        self.epoch += 1
        sync(self.device)
        t0 = time.perf_counter()
        train_one_epoch(self.model, loader, self.opt, self.crit, scheduler=self.sched, amp=self.amp,
                        device=self.device, channels_last=self.channels_last,
                        log_every=self.config.log_every)
        sync(self.device)
        return time.perf_counter() - t0

    def infer(self, n: int) -> float:
        from cnnbench.training.evaluation import evaluate

        loader = self.loader(n, shuffle=False)
        sync(self.device)
        t0 = time.perf_counter()
        evaluate(self.model, loader, num_classes=10, device=self.device, amp=self.amp,
                 channels_last=self.channels_last)
        sync(self.device)
        return time.perf_counter() - t0


def timed(run, budget_s: float, warmup: int, min_steps: int, max_steps: int) -> tuple[float, int, float]:
    """Warm up, then time ``k`` steps (k fitted to the budget). Returns (seconds, k, warm-up s)."""
    t_first = run(1)  # first step: allocation, kernel selection (and compilation)
    warm = t_first
    if warmup > 1 and t_first < budget_s / 2:
        warm += run(warmup - 1)
        per_step = (warm - t_first) / (warmup - 1)
    else:
        per_step = t_first
    k = int(max(min_steps, min(max_steps, budget_s // max(per_step, 1e-6))))
    return run(k), k, warm


def turns(repeats: int) -> list[str]:
    """The order of a row's timed training runs, ``repeats`` of each path: plain-cnnbench, then
    cnnbench-plain, then plain-cnnbench again, ..."""
    return [path for r in range(repeats)
            for path in (("plain", "cnnbench") if r % 2 == 0 else ("cnnbench", "plain"))]


def choose_channels_last(args, device) -> tuple[bool, str]:
    if args.channels_last in ("on", "off"):
        return args.channels_last == "on", f"channels_last {args.channels_last} (forced)"
    if device.type == "cuda":
        return True, "channels_last on (CUDA)"
    shape = INPUTS["3x32x32"]
    rates = {}
    for cl in (False, True):
        model = make_model(args.probe_model, shape, device, cl)
        p = Plain(model, shape, args.batch_size, device, cl, "off", False)
        dt, k, _ = timed(p.steps, args.budget_s, args.warmup, args.min_steps, args.max_steps)
        rates[cl] = k * args.batch_size / dt
        print(f"probe {args.probe_model} 3x32x32 plain training, channels_last={cl}: {rates[cl]:.0f} img/s", flush=True)
    pick = rates[True] > rates[False]
    return pick, (f"channels_last {'on' if pick else 'off'} (probe {args.probe_model} 3x32x32 plain training: "
                  f"{rates[True]:.0f} img/s channels_last vs {rates[False]:.0f} img/s contiguous)")


def measure(name: str, input_name: str, args, device, channels_last: bool, amp: str, bs: int) -> dict:
    from cnnbench.models.profile import count_macs, count_params

    shape = INPUTS[input_name]
    model = make_model(name, shape, device, channels_last)
    params, macs = count_params(model), int(count_macs(model, shape))
    row = {"model": name, "input": input_name, "stem": getattr(model, "stem", None), "params": params, "macs": macs,
           "batch_size": bs}
    t_all = time.perf_counter()
    plain = Plain(model, shape, bs, device, channels_last, amp, args.compile)
    dt, k, _ = timed(plain.steps, args.budget_s, args.warmup, args.min_steps, args.max_steps)
    ours = Cnnbench(model, shape, bs, device, channels_last, amp, args.compile)
    # Same number of timed steps as plain, after as many warm-up steps as plain had (one for a
    # model whose step is slower than half the budget); then the rounds (module docstring).
    # (plain's fitting run only sets k: it ran before cnnbench's path was built and warmed up)
    per_step = dt / k
    ours.steps(args.warmup if per_step < args.budget_s / 2 else 1)
    times = {"plain": [], "cnnbench": []}
    for path in turns(args.repeats):
        times[path].append((plain if path == "plain" else ours).steps(k))
    rounds = [p / c for p, c in zip(times["plain"], times["cnnbench"])]
    row.update(plain_train_images_per_s=k * bs / min(times["plain"]),
               train_images_per_s=k * bs / min(times["cnnbench"]), train_steps=k, repeats=args.repeats,
               ratio_rounds=rounds, ratio_vs_plain=statistics.median(rounds))
    dt_inf, k_inf, _ = timed(ours.infer, args.budget_s, args.warmup, args.min_steps, args.max_steps)
    row.update(infer_images_per_s=k_inf * bs / dt_inf, infer_steps=k_inf)
    row["train_gflops_per_s"] = 6 * macs * row["train_images_per_s"] / 1e9
    row["plain_train_gflops_per_s"] = 6 * macs * row["plain_train_images_per_s"] / 1e9
    row["infer_gflops_per_s"] = 2 * macs * row["infer_images_per_s"] / 1e9
    row["compute_bound"] = macs >= COMPUTE_BOUND_MACS
    row["wall_s"] = time.perf_counter() - t_all
    return row


def measure_fitting(name, input_name, args, device, channels_last, amp) -> dict:
    """:func:`measure` at the largest of :func:`smaller_batches` that fits in memory."""
    batches = smaller_batches(args.batch_size, device.type)
    for i, bs in enumerate(batches):
        try:
            return measure(name, input_name, args, device, channels_last, amp, bs)
        except torch.cuda.OutOfMemoryError:
            if i == len(batches) - 1:
                raise
            print(f"{name:16s} {input_name}: out of memory at batch {bs}; trying {batches[i + 1]}", flush=True)
            torch.cuda.empty_cache()
    raise AssertionError("unreachable")


def batch_size_arg(value: str) -> str:
    """argparse type of --batch-size: ``auto`` or a positive integer (kept as text for plan())."""
    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f"{value!r} is neither auto nor a positive number of images")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="*", help="fnmatch pattern(s), comma-separated (default: all)")
    ap.add_argument("--inputs", default="1x28x28,3x32x32")
    ap.add_argument("--batch-size", default="auto", type=batch_size_arg,
                    help="images per step, or auto (default): 64 on the CPU, 1024 on CUDA (halved on out-of-memory)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--budget-s", type=float, default=2.0, help="timed seconds per measurement (default 2)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps (1 for models slower than the budget)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="rounds of plain and cnnbench training, in turns: best images/s of each kept, "
                         "the ratio is the rounds' median (default 5)")
    ap.add_argument("--min-steps", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--probe-model", default="resnet18", help="model timed to pick the CPU memory format")
    ap.add_argument("--compile", action="store_true", help="torch.compile both paths")
    ap.add_argument("--amp", choices=["off", "bf16", "auto"], default=None,
                    help="autocast precision (default: bf16 on CUDA, fp32 on the CPU; auto: bf16 where the "
                         "device computes it natively and, on a CPU, was measured faster, as cnnbench "
                         "train --amp auto decides)")
    ap.add_argument("--name", default="model_throughput",
                    help="result file name: <name>-<cpu|cuda>.json (default model_throughput)")
    ap.add_argument("--max-total-s", type=float, default=None,
                    help="start no measurement after this many seconds (the rest is listed as not measured)")
    ap.add_argument("--results-dir", default=None, help="write the JSON here instead of benchmarks/results")
    args = ap.parse_args(argv)
    args.batch_size, target = plan(args.device, args.batch_size)
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1 (timed runs of each path), got {args.repeats}")

    from cnnbench.models import list_models

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from cnnbench.devices import resolve_amp

    amp = resolve_amp(args.amp or ("bf16" if device.type == "cuda" else "off"), device)
    names = sorted({n for pat in args.models.split(",") for n in list_models(pat.strip())})
    if not names:
        raise SystemExit(f"no model matches {args.models!r}; `cnnbench models` lists them")
    inputs = [s.strip() for s in args.inputs.split(",")]
    for s in inputs:
        if s not in INPUTS:
            raise SystemExit(f"unknown input {s!r}; choose from {', '.join(INPUTS)}")
    channels_last, cl_note = choose_channels_last(args, device)
    settings = (f"{args.device}, {torch.get_num_threads()} threads, "
                f"{'bf16 autocast' if amp == 'bf16' else 'fp32'}, {cl_note}"
                f"{', torch.compile' if args.compile else ''}; SGD momentum 0.9; ~{args.budget_s:g} s timed per "
                f"measurement after {args.warmup} warm-up steps, "
                f"{args.repeats} rounds in turns (best images/s; ratio: the rounds' median)")
    print(settings, flush=True)

    rows, skipped, not_measured = [], [], []
    t_start = time.perf_counter()
    for name in names:
        for input_name in inputs:
            if args.max_total_s is not None and time.perf_counter() - t_start >= args.max_total_s:
                not_measured.append({"model": name, "input": input_name})
                continue
            try:
                row = measure_fitting(name, input_name, args, device, channels_last, amp)
            except Exception as exc:  # noqa: BLE001 - one model's failure must not end the benchmark
                msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                print(f"{name:16s} {input_name}: SKIPPED ({type(exc).__name__}: {msg})", flush=True)
                skipped.append({"model": name, "input": input_name, "error": f"{type(exc).__name__}: {msg}"})
                continue
            rows.append(row)
            print(f"{name:16s} {input_name}: {row['macs'] / 1e6:8.1f} MMACs | train {row['train_images_per_s']:8.0f} img/s "
                  f"({row['train_gflops_per_s']:6.1f} GFLOP/s; plain {row['plain_train_images_per_s']:8.0f}, "
                  f"ratio {row['ratio_vs_plain']:.2f}) | infer {row['infer_images_per_s']:8.0f} img/s | {row['wall_s']:.0f} s",
                  flush=True)
    bound = [r for r in rows if r["compute_bound"]]
    worst = min(bound, key=lambda r: r["ratio_vs_plain"]) if bound else None
    if worst:
        print(f"lowest ratio vs plain PyTorch among compute-bound models: {worst['ratio_vs_plain']:.2f} "
              f"({worst['model']} {worst['input']}; target >= {target:g})")
    if not_measured:
        print(f"not measured ({len(not_measured)}): the --max-total-s cap of {args.max_total_s:g} s was reached", flush=True)
    write_result(args.name, {
        "batch_size": args.batch_size, "settings": settings, "amp": amp, "channels_last": channels_last,
        "compile": args.compile, "num_threads": torch.get_num_threads(), "models_pattern": args.models,
        "budget_s": args.budget_s, "compute_bound_macs": COMPUTE_BOUND_MACS, "target_ratio_vs_plain": target,
        "target_device": "cuda" if device.type == "cuda" else "cpu",
        "min_ratio_vs_plain_compute_bound": worst["ratio_vs_plain"] if worst else None,
        "all_compute_bound_met": (worst["ratio_vs_plain"] >= target) if worst else None,
        "max_total_s": args.max_total_s, "complete": not not_measured, "not_measured": not_measured,
        "total_wall_s": time.perf_counter() - t_start, "rows": rows, "skipped": skipped,
    }, args.device, args.results_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
