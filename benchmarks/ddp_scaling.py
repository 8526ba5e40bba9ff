"""Training speed of one process vs several (torchrun, DistributedDataParallel) on this machine.

The same ``cnnbench train`` run (default ``--recipe default``: LeNet-5 on MNIST, global batch
128) in two configurations that use the same cores:

* one process with ``--num-threads T`` (``--threads``, default 2);
* ``torchrun --nproc_per_node=N`` (``--nproc``, default 2) with ``T / N`` threads per process.

Both see the same global batches (``--batch-size`` is the global batch), so they compute the
same steps. Reported per configuration, median over ``--repeats`` runs taken in alternation:
training seconds (the training loops only, from ``summary.json``: start-up, evaluation and
checkpoints excluded), training images/s, wall seconds of the whole command (start-up of the
processes included) and test accuracy. The machine's load average before each run is recorded:
on a machine shared with other jobs the numbers are only what that day gave (``--note`` says so
in the JSON).

Run: ``.venv/bin/python benchmarks/ddp_scaling.py --note "..."`` (needs MNIST: see `cnnbench
datasets`). On GPUs: ``--device cuda --nproc <GPUs>`` (then one GPU per process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnbench.training.distributed import torchrun_command

from common import run_main, write_result


def one_run(command: list[str], out: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CNNBENCH_OFFLINE": "1"}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(command + ["--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"train_time_s": summary["train_time_s"], "train_images_per_s": summary["train_images_per_s"],
            "wall_s": wall, "test_acc": summary["test_acc"], "images_seen": summary["images_seen"],
            "steps": summary["steps"], "processes": summary["processes"],
            "num_threads_per_process": summary["num_threads"], "load_average_before": load}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads in all (one process: all "
                    "of them; N processes: threads / N each)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-args", default="--recipe default",
                    help="further `cnnbench train` options, one string")
    ap.add_argument("--note", default="", help="recorded in the JSON (e.g. that the machine was shared)")
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args()
    if args.threads % args.nproc:
        raise SystemExit("--threads must be divisible by --nproc (the same cores for both)")
    train = ["train", "--device", args.device, "--epochs", str(args.epochs), "--quiet",
             *args.train_args.split()]
    configs = {
        "1 process": ([sys.executable, "-m", "cnnbench", *train, "--num-threads", str(args.threads)],
                      args.threads),
        f"{args.nproc} processes": (torchrun_command(args.nproc, [*train, "--num-threads",
                                                                  str(args.threads // args.nproc)]),
                                    args.threads // args.nproc),
    }
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, (command, threads) in configs.items():
                out = Path(tmp) / f"{name.replace(' ', '-')}-{repeat}"
                runs[name].append(one_run(command, out, threads))
                r = runs[name][-1]
                print(f"{name} #{repeat + 1}: train {r['train_time_s']:.1f} s "
                      f"({r['train_images_per_s']:.0f} img/s), wall {r['wall_s']:.1f} s, "
                      f"test acc {100 * r['test_acc']:.2f}%, load before {r['load_average_before']:.1f}")
    rows = []
    for name, results in runs.items():
        rows.append({"config": name, "processes": results[0]["processes"],
                     "threads_per_process": results[0]["num_threads_per_process"],
                     "median_train_time_s": statistics.median(r["train_time_s"] for r in results),
                     "median_train_images_per_s": statistics.median(r["train_images_per_s"] for r in results),
                     "median_wall_s": statistics.median(r["wall_s"] for r in results),
                     "test_acc": [r["test_acc"] for r in results], "runs": results})
    base = rows[0]["median_train_time_s"]
    for row in rows:
        row["speedup_train"] = base / row["median_train_time_s"]
    write_result("ddp_scaling", {
        "command": " ".join(train), "epochs": args.epochs, "threads_in_all": args.threads,
        "nproc": args.nproc, "repeats": args.repeats, "backend": "nccl" if args.device == "cuda" else "gloo",
        "note": args.note, "rows": rows}, device=args.device, results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
