"""cnnbench's speed on one CUDA GPU: the fast CIFAR and MNIST recipes and model throughput.

A prepared device script: one call, at most ``--deadline-s`` seconds (default 480: a lent GPU
allows 10 minutes per command, of which start-up and the copy back take some). Each part has its
own budget (``--budget PART=SECONDS``) and is also cut at the global deadline; a part that is cut
or not started says so in its ``status``. The JSON is rewritten after every run, so a kill leaves
the results so far. Parts, in order:

``cifar``
    ``--recipe fast`` on ``cifar10_jpeg`` (all 50,000 training images, val_split 0, the final
    weights tested once with the recipe's TTA), as ``cnnbench train`` resolves it for the device
    (on cuda: airbench94's widths 64/256/256, batch 1024, lr 1.5, bf16). First a **cold start**:
    seed 0 in a fresh Python process (``process_wall_s`` = process start to end: interpreter,
    ``import torch``, CUDA initialisation, loading the cached tensors, training, evaluation;
    decoding the JPEGs into cnnbench's cache, once per machine, is done and timed before it:
    ``data_prepare_s``); ``train_time_s``
    = training only, as ``summary.json`` counts it). Then, in this process, one unrecorded
    1-epoch warm-up and ``--seeds`` seeds **warm**: test accuracy and training seconds per
    seed, mean and std. Target (for an H200 and cifar10_jpeg): >= 90.6% mean test accuracy with
    <= 3.2 s of training per seed, i.e. airbench94's accuracy within 1.5x of its training time
    on the same GPU and data (cnnbench does not ship or run airbench).
``cifar_compile``
    the same recipe with ``compile=True``, seed 0, in a fresh process: test accuracy, training
    seconds, and the compilation time estimated as the first epoch's seconds minus the median of
    the later epochs' (``metrics.jsonl``).
``mnist``
    ``--recipe fast`` on ``mnist``, ``--seeds`` seeds in this process: test accuracy and
    training seconds per seed.
``throughput``
    ``benchmarks/model_throughput.py --device <device>`` in a subprocess, capped with its
    ``--max-total-s`` to this part's budget: every model, bf16 + channels_last on CUDA, at the
    batch it picks (1024, halved on out-of-memory), against a plain PyTorch loop; target >= 0.9 of
    plain for every compute-bound model. Its own JSON comes back too. 35 models x 2 inputs may
    not all fit in the default 150 s: those not started are listed (``not_measured``,
    ``complete`` false); ``--parts throughput --budget throughput=450 --deadline-s 470`` in a
    second call measures them all.

Output: ``--out`` gets ``gpu_speed-<cpu|cuda>.json`` (benchmarks/common.py's environment: device
name, torch version, commit, date) and ``model_throughput-<cpu|cuda>.json``; with
``--results-dir`` the same files are copied there (``--results-dir benchmarks/results`` to
commit them). **Results are committed only from a real GPU run**; nothing here is estimated.

On a lent GPU (no pip there; torch is installed; run from the repository root)::

    # here: pack the data into an ignored folder that travels with `carry` (~20 MB)
    mkdir -p gpu-carry && tar czf gpu-carry/data.tar.gz -C ../shared/datasets MNIST CIFAR10-JPEG
    # there (run tool: carry ["gpu-carry"], timeout_s 560):
    mkdir -p gpu-data && tar xzf gpu-carry/data.tar.gz -C gpu-data && \\
      PYTHONPATH=src python benchmarks/gpu_speed.py --data-dir gpu-data --out $OUT

then copy the two JSON files from the returned folder into benchmarks/results/ and commit them.
Tested on the CPU with tiny sizes (``--device cpu --set limit_train=... --set epochs=1``):
tests/benchmarks/test_gpu_speed.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import parse_sets, resolve_recipe as resolve, write_result  # noqa: E402

PARTS = ("cifar", "mnist", "cifar_compile", "throughput")
BUDGETS = {"cifar": 150.0, "mnist": 40.0, "cifar_compile": 120.0, "throughput": 150.0}
CIFAR_TARGET = {"target_acc": 0.906, "target_train_s": 3.2,
                "reference": "airbench94's accuracy within 1.5x of its training time, H200, cifar10_jpeg"}
THROUGHPUT_TARGET = 0.9


class Clock:
    """The global deadline and the budget of the part running now."""

    def __init__(self, deadline_s: float):
        self.start = time.monotonic()
        self.deadline = self.start + deadline_s
        self.part_end = self.deadline

    def begin(self, budget_s: float) -> None:
        self.part_end = min(self.deadline, time.monotonic() + budget_s)

    def left(self) -> float:
        """Seconds left to the part now running (never past the global deadline)."""
        return self.part_end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def precision(config, device: str) -> str:
    """The autocast precision the config's runs use on ``device`` (``auto`` resolved)."""
    import torch

    from cnnbench.devices import resolve_amp

    return resolve_amp(config.amp, torch.device(device))


def train(values: dict, out_dir: Path) -> dict:
    """One ``train_run`` of the resolved ``values`` in this process; its summary."""
    from cnnbench.training import train_run

    config = resolve(values.pop("recipe"), values.pop("dataset"), values)
    return train_run(config, out_dir=out_dir, progress=False, argv=[sys.executable, *sys.argv])


def run_record(summary: dict, run_dir: Path, **extra) -> dict:
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if line.strip()] if (run_dir / "metrics.jsonl").exists() else []
    return {**extra, "test_acc": summary.get("test_acc"), "train_time_s": summary.get("train_time_s"),
            "eval_time_s": summary.get("eval_time_s"), "images_per_s": summary.get("train_images_per_s"),
            "epochs_completed": summary.get("epochs_completed"), "amp": summary.get("amp"),
            "epoch_time_s": [e.get("epoch_time_s") for e in epochs], "limited": summary.get("limited", False),
            "run_dir": str(run_dir)}


def child_env() -> dict:
    """This environment with the checkout's src/ first on PYTHONPATH (no install on a lent GPU)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"), env.get("PYTHONPATH")]))
    return env


def child(values: dict, out_dir: Path, clock: Clock) -> tuple[dict | None, str, float]:
    """One run in a fresh Python process (this script's ``--child``), killed when the part's
    time is up. Returns (summary or None, status, process wall seconds)."""
    left = clock.left()
    if left < 1:
        return None, "not started: time budget used", 0.0
    spec = out_dir.parent / f"{out_dir.name}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"values": values, "out_dir": str(out_dir)}))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(spec)],
                            env=child_env(), start_new_session=True)
    try:
        rc = proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None, "stopped at the time budget", time.monotonic() - t0
    wall = time.monotonic() - t0
    summary_path = out_dir / "summary.json"
    if rc != 0 or not summary_path.exists():
        return None, f"exit {rc}", wall
    return json.loads(summary_path.read_text()), "done", wall


def mean_std(runs: list[dict], key: str) -> tuple[float | None, float | None]:
    vals = [r[key] for r in runs if r.get(key) is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def seeds_in_process(recipe: str, dataset: str, base: dict, seeds: int, runs_dir: Path, prefix: str,
                     clock: Clock, entry: dict, save) -> str:
    """``seeds`` in-process runs into ``entry["runs"]`` (the JSON is saved after each); a seed is
    not started when the last one's wall time would not fit in the part's time left."""
    runs = entry["runs"] = []
    last_wall = 0.0
    for seed in range(seeds):
        if clock.left() < max(1.0, 1.2 * last_wall):
            return f"stopped at the time budget after {len(runs)} of {seeds} seeds"
        t0 = time.monotonic()
        out = runs_dir / f"{prefix}-seed{seed}"
        summary = train({"recipe": recipe, "dataset": dataset, **base, "seed": seed}, out)
        last_wall = time.monotonic() - t0
        runs.append(run_record(summary, out, seed=seed, wall_s=last_wall))
        save()
    return "done"


def summarise(entry: dict) -> None:
    runs = entry.get("runs", [])
    acc, acc_std = mean_std(runs, "test_acc")
    t, t_std = mean_std(runs, "train_time_s")
    entry.update(seeds=len(runs), test_acc_mean=acc, test_acc_std=acc_std, train_time_s_mean=t,
                 train_time_s_std=t_std)


def part_cifar(args, base, clock, result, save) -> None:
    entry = result["parts"]["cifar"] = {"status": "running", "recipe": "fast", "dataset": args.cifar_dataset,
                                        **CIFAR_TARGET}
    config = resolve("fast", args.cifar_dataset, dict(base))
    entry.update(model=config.model, model_kwargs=config.model_kwargs, batch_size=config.batch_size,
                 epochs=config.epochs, lr=config.lr, amp=precision(config, args.device), tta=config.tta)
    runs_dir = args.runs_path
    # On a fresh machine the JPEGs are decoded into cnnbench's tensor cache once; that one-time
    # cost is timed here, apart, so the cold start measures a fresh process, not the decoding.
    from cnnbench import data

    t0 = time.monotonic()
    data.load_dataset(args.cifar_dataset, data_dir=base.get("data_dir"))
    entry["data_prepare_s"] = time.monotonic() - t0
    out = runs_dir / "cifar-cold"
    summary, status, wall = child({"recipe": "fast", "dataset": args.cifar_dataset, **base, "seed": 0}, out, clock)
    entry["cold"] = {"status": status, "process_wall_s": wall,
                     **(run_record(summary, out, seed=0) if summary else {})}
    save()
    if summary is None:
        entry["status"] = f"cold run: {status}"
        return
    if clock.left() < 1.2 * wall:
        entry["status"] = "stopped at the time budget after the cold run (no warm-up, no warm seeds)"
        return
    # Warm-up in this process, not recorded: CUDA initialisation, cuDNN autotuning and the
    # allocations of every shape (the whole recipe once, seed 99).
    t0 = time.monotonic()
    train({"recipe": "fast", "dataset": args.cifar_dataset, **base, "seed": 99}, runs_dir / "cifar-warmup")
    entry["warmup_s"] = time.monotonic() - t0
    save()
    entry["status"] = seeds_in_process("fast", args.cifar_dataset, base, args.seeds, runs_dir, "cifar", clock,
                                       entry, save)
    summarise(entry)
    runs = entry["runs"]
    entry["met"] = bool(runs) and entry["test_acc_mean"] >= CIFAR_TARGET["target_acc"] and \
        max(r["train_time_s"] for r in runs) <= CIFAR_TARGET["target_train_s"]


def compile_estimate(epoch_times: list[float], train_time_s: float | None) -> dict:
    """The compilation seconds of a compiled run: its first epoch's seconds minus the median of
    its later epochs' (None with one epoch)."""
    if len(epoch_times) < 2 or train_time_s is None:
        return {"compile_time_s": None, "compile_time_note": "one epoch only: compilation not separable"}
    later = statistics.median(epoch_times[1:])
    return {"compile_time_s": epoch_times[0] - later,
            "compile_time_note": ("first epoch's seconds minus the median of the later epochs' "
                                  f"({epoch_times[0]:.2f} - {later:.2f})"),
            "train_time_s_without_compile": train_time_s - (epoch_times[0] - later)}


def part_cifar_compile(args, base, clock, result, save) -> None:
    entry = result["parts"]["cifar_compile"] = {"status": "running", "recipe": "fast",
                                                "dataset": args.cifar_dataset, "compile": True}
    out = args.runs_path / "cifar-compile"
    summary, status, wall = child({"recipe": "fast", "dataset": args.cifar_dataset, **base, "seed": 0,
                                   "compile": True}, out, clock)
    entry["status"] = status
    entry["process_wall_s"] = wall
    if summary:
        entry.update(run_record(summary, out, seed=0))
        entry.update(compile_estimate(entry["epoch_time_s"], entry["train_time_s"]))


def part_mnist(args, base, clock, result, save) -> None:
    entry = result["parts"]["mnist"] = {
        "status": "running", "recipe": "fast", "dataset": args.mnist_dataset,
        "note": "seeds trained in this process (after the CIFAR part where it ran); no warm-up run, so the "
                "first seed also pays cuDNN autotuning of LeNet-5's shapes"}
    config = resolve("fast", args.mnist_dataset, dict(base))
    entry.update(model=config.model, batch_size=config.batch_size, epochs=config.epochs, amp=precision(config, args.device))
    entry["status"] = seeds_in_process("fast", args.mnist_dataset, base, args.seeds, args.runs_path, "mnist",
                                       clock, entry, save)
    summarise(entry)


def part_throughput(args, base, clock, result, save) -> None:
    entry = result["parts"]["throughput"] = {"status": "running", "target_ratio_vs_plain": THROUGHPUT_TARGET
                                             if args.device.startswith("cuda") else 0.7}
    left = clock.left()
    cap = left - args.throughput_margin_s  # the slowest single measurement must still fit
    if cap < 1:
        entry["status"] = "not started: time budget used"
        return
    tmp = args.runs_path / "throughput"
    cmd = [sys.executable, str(HERE / "model_throughput.py"), "--device", args.device, "--max-total-s", f"{cap:.0f}",
           "--budget-s", str(args.throughput_budget_s), "--models", args.throughput_models,
           "--inputs", args.throughput_inputs, "--results-dir", str(tmp), *args.throughput_arg]
    entry["command"] = " ".join(cmd[1:])
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=child_env(), start_new_session=True)
    try:
        rc = proc.wait(timeout=left)
        entry["status"] = "done" if rc == 0 else f"exit {rc}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        entry["status"] = "stopped at the time budget (killed; no JSON)"
    entry["wall_s"] = time.monotonic() - t0
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    path = tmp / f"model_throughput-{kind}.json"
    if path.exists():
        rec = json.loads(path.read_text())
        shutil.copy(path, Path(args.out) / path.name)
        if args.results_dir:
            shutil.copy(path, Path(args.results_dir) / path.name)
        bound = [r for r in rec["rows"] if r["compute_bound"]]
        entry.update({k: rec.get(k) for k in ("batch_size", "settings", "target_ratio_vs_plain",
                                              "min_ratio_vs_plain_compute_bound", "all_compute_bound_met",
                                              "complete", "total_wall_s")},
                     measured=len(rec["rows"]), not_measured=len(rec.get("not_measured", [])),
                     skipped=len(rec.get("skipped", [])), file=path.name,
                     below_target=[f"{r['model']} {r['input']}: {r['ratio_vs_plain']:.2f}" for r in bound
                                   if r["ratio_vs_plain"] < rec["target_ratio_vs_plain"]])
        if not rec.get("complete", True) and entry["status"] == "done":
            entry["status"] = "stopped at the time budget (--max-total-s): not every model measured"


RUNNERS = {"cifar": part_cifar, "cifar_compile": part_cifar_compile, "mnist": part_mnist,
           "throughput": part_throughput}


def parse_budgets(items: list[str]) -> dict[str, float]:
    budgets = dict(BUDGETS)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in BUDGETS:
            raise SystemExit(f"--budget needs PART=SECONDS with PART one of {', '.join(BUDGETS)}, got {item!r}")
        budgets[key.strip()] = float(value)
    return budgets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="where the JSON files go (the device's $OUT)")
    ap.add_argument("--results-dir", help="also copy them here (benchmarks/results to commit a GPU run)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (tests)")
    ap.add_argument("--data-dir", help="data root holding MNIST and CIFAR10-JPEG")
    ap.add_argument("--seeds", type=int, default=3, help="warm seeds per recipe (default 3)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="TrainConfig override for every training run (tests: limit_train=32, epochs=1)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, in this order (default {','.join(PARTS)})")
    ap.add_argument("--deadline-s", type=float, default=480.0, help="global deadline in seconds (default 480)")
    ap.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS",
                    help="a part's own budget (defaults: " + ", ".join(f"{k}={v:g}" for k, v in BUDGETS.items()) + ")")
    ap.add_argument("--cifar-dataset", default="cifar10_jpeg")
    ap.add_argument("--mnist-dataset", default="mnist")
    ap.add_argument("--throughput-models", default="*")
    ap.add_argument("--throughput-inputs", default="1x28x28,3x32x32")
    ap.add_argument("--throughput-budget-s", type=float, default=0.25,
                    help="timed seconds per throughput measurement (default 0.25)")
    ap.add_argument("--throughput-margin-s", type=float, default=15.0,
                    help="seconds of the throughput budget kept for the last measurement (default 15)")
    ap.add_argument("--throughput-arg", action="append", default=[], help="extra model_throughput.py argument")
    ap.add_argument("--runs-dir", default="gpu-speed-runs",
                    help="run folders go into a new <time> folder under it (default gpu-speed-runs)")
    args = ap.parse_args(argv)

    clock = Clock(args.deadline_s)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for p in parts:
        if p not in RUNNERS:
            raise SystemExit(f"unknown part {p!r}; choose from {', '.join(PARTS)}")
    budgets = parse_budgets(args.budget)
    import torch

    base = {"device": args.device, "val_split": 0, **parse_sets(args.set)}
    if args.data_dir:
        base["data_dir"] = args.data_dir
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    args.runs_path = Path(args.runs_dir) / time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.results_dir:
        Path(args.results_dir).mkdir(parents=True, exist_ok=True)
    result = {"deadline_s": args.deadline_s, "budgets": budgets, "parts_asked": parts, "seeds_asked": args.seeds,
              "overrides": parse_sets(args.set), "limited": any(k.startswith("limit_") for k in parse_sets(args.set))
              or "epochs" in parse_sets(args.set), "parts": {}, "elapsed_s": 0.0}

    def save() -> None:
        result["elapsed_s"] = clock.elapsed()
        path = write_result("gpu_speed", result, args.device, out)
        if args.results_dir:
            shutil.copy(path, Path(args.results_dir) / path.name)

    save()
    for part in parts:
        if clock.deadline - time.monotonic() < 1:
            result["parts"][part] = {"status": "not started: global deadline reached"}
            save()
            continue
        clock.begin(budgets[part])
        print(f"[{clock.elapsed():6.1f} s] {part} (at most {clock.left():.0f} s)", flush=True)
        t0 = time.monotonic()
        try:
            RUNNERS[part](args, base, clock, result, save)
        except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the others
            result["parts"].setdefault(part, {})["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        result["parts"][part]["part_wall_s"] = time.monotonic() - t0
        save()
    print(json.dumps({k: v.get("status") for k, v in result["parts"].items()}), flush=True)
    return 0


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    train(spec["values"], Path(spec["out_dir"]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2]))
    sys.exit(main())
