"""Two PyTorch jobs on one CPU: a run beside another job, with all threads and with the
threads cnnbench picks from the load it sees at start (``--num-threads 0``, the default).

The other job is a PyTorch training loop (LeNet-5, batch 128 of 28x28 random images, forward,
backward and an SGD step, ``--other-threads`` threads, 2 by default: as a second ``cnnbench
train`` would use) started in a subprocess and kept running; its speed (steps/s) is read from
the timestamps it writes. The measured run is ``cnnbench train --recipe fast --dataset mnist
--epochs 1`` in a process of its own, reading its training time from ``summary.json``:

* ``alone``: no other job (the machine otherwise idle), threads as cnnbench picks them;
* ``beside, all threads``: the other job running, ``--num-threads`` = all cores;
* ``beside, picked``: the other job running, ``--num-threads 0`` (cnnbench reads the load
  for 0.15 s and takes its share of the free cores; its summary says how many).

Each condition ``--repeats`` times (default 2); the other job alone is measured between them.

Run: ``.venv/bin/python benchmarks/two_jobs.py`` (needs MNIST: see `cnnbench datasets`).
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

from common import run_main, write_result

ROOT = Path(__file__).resolve().parent.parent

OTHER_JOB = """
import sys, time, torch
from cnnbench.models import create_model
torch.set_num_threads(int(sys.argv[1]))
model = create_model("lenet5", num_classes=10, in_chans=1, input_size=28)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        for _ in range(10):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.write(f"{time.monotonic()}\\n")  # 10 steps done
"""


def other_steps_per_s(log: Path, start: float, end: float) -> float | None:
    """The other job's speed between two moments (monotonic clock), from its timestamps."""
    stamps = [float(line) for line in log.read_text().split()]
    inside = [t for t in stamps if start <= t <= end]
    if len(inside) < 2:
        return None
    return 10 * (len(inside) - 1) / (inside[-1] - inside[0])


def train_once(threads: int, out: Path, env: dict) -> dict:
    """``cnnbench train --recipe fast --dataset mnist --epochs 1`` in a new process."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cnnbench", "train", "--recipe", "fast", "--dataset",
                           "mnist", "--epochs", "1", "--num-threads", str(threads), "--quiet",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=900)
    end = time.monotonic()
    if done.returncode != 0:
        raise SystemExit(f"the measured run failed:\n{done.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {"train_time_s": summary["train_time_s"], "num_threads": summary["num_threads"],
            "threads_note": summary.get("threads_note"), "test_acc": summary["test_acc"],
            "process_wall_s": end - start, "start": start, "end": end}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--other-threads", type=int, default=os.cpu_count() or 2,
                    help="the other job's threads (default: one per core)")
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rows: dict[str, list[dict]] = {"alone": [], "beside, all threads": [], "beside, picked": []}
    other_alone = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.repeats):
            rows["alone"].append(train_once(0, tmp / f"alone-{r}", env))
            print(f"alone: {rows['alone'][-1]['train_time_s']:.2f} s "
                  f"({rows['alone'][-1]['num_threads']} threads)", flush=True)
        log = tmp / "other.log"
        other = subprocess.Popen([sys.executable, "-c", OTHER_JOB, str(args.other_threads), str(log)],
                                 env=env)
        try:
            time.sleep(4)  # torch imported, the loop running
            for r in range(args.repeats):
                t0 = time.monotonic()
                time.sleep(3)
                other_alone.append(other_steps_per_s(log, t0, time.monotonic()))
                for name, threads in (("beside, all threads", cores), ("beside, picked", 0)):
                    row = train_once(threads, tmp / f"{name.replace(', ', '-').replace(' ', '_')}-{r}", env)
                    row["other_steps_per_s"] = other_steps_per_s(log, row["start"], row["end"])
                    rows[name].append(row)
                    print(f"{name}: {row['train_time_s']:.2f} s ({row['num_threads']} threads); the "
                          f"other job {row['other_steps_per_s']:.1f} steps/s (alone "
                          f"{other_alone[-1]:.1f})", flush=True)
        finally:
            other.kill()
            other.wait()
    summary = {name: {"median_train_time_s": statistics.median(x["train_time_s"] for x in runs),
                      "threads": sorted({x["num_threads"] for x in runs}),
                      "median_other_steps_per_s": (statistics.median(x["other_steps_per_s"] for x in runs)
                                                   if name != "alone" else None)}
                 for name, runs in rows.items()}
    for runs in rows.values():
        for x in runs:
            del x["start"], x["end"]
    alone = summary["alone"]["median_train_time_s"]
    for name, s in summary.items():
        s["slowdown_vs_alone"] = s["median_train_time_s"] / alone
    print(json.dumps(summary, indent=1))
    write_result("two_jobs", {
        "benchmark": "two_jobs", "cores": cores, "other_threads": args.other_threads,
        "measured": "cnnbench train --recipe fast --dataset mnist --epochs 1 (training time from "
                    "summary.json); the other job: LeNet-5 SGD steps on random batches of 128",
        "other_alone_steps_per_s": other_alone, "summary": summary, "runs": rows,
    }, results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
