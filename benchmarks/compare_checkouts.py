"""Do two checkouts of cnnbench train the same? Run the same commands with each and compare.

For a refactoring that must not change results: every command runs once with the ``--old``
checkout's ``src/`` and once with the ``--new`` one's (default: this checkout), same data, same
seed, one process at a time, and the summaries' accuracies and losses must be identical.
Training times are recorded too (they are only comparable when the machine is otherwise idle).

    .venv/bin/python benchmarks/compare_checkouts.py --old ../old-checkout
    .venv/bin/python benchmarks/compare_checkouts.py --old ../old --runs default fast-mnist

Writes ``benchmarks/results/compare_checkouts-cpu.json``; exits 1 when a result differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import run_main, write_result

HERE = Path(__file__).resolve().parent.parent
# name -> arguments of `cnnbench train` (the data root comes from $CNNBENCH_DATA)
RUNS = {
    "default": ["--seed", "0"],                                            # LeNet-5, MNIST, 6 epochs
    "fast-mnist": ["--recipe", "fast", "--dataset", "mnist", "--seed", "0"],
    # the two recipes a refactoring of the loop must leave as they were: accuracies to the digit
    # under --deterministic, times within noise (issue #29)
    "fast-mnist-det": ["--recipe", "fast", "--dataset", "mnist", "--seed", "0", "--deterministic"],
    "fast-cifar-det": ["--recipe", "fast", "--dataset", "cifar10_jpeg", "--seed", "0",
                       "--deterministic"],
}
COMPARED = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "params", "macs", "epochs_completed")


def git_describe(checkout: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True,
                         text=True)
    return out.stdout.strip() or "unknown"


def train(checkout: Path, args: list[str], out: Path, threads: int) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-m", "cnnbench", "train", *args, "--out", str(out), "--quiet",
            "--num-threads", str(threads)]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {checkout}: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads((out / "summary.json").read_text()), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, type=Path, help="the checkout to compare against")
    parser.add_argument("--new", type=Path, default=HERE, help="default: this checkout")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--idle", action="store_true",
                        help="state in the result that the machine was otherwise idle")
    parser.add_argument("--train-args", default="",
                        help="further `cnnbench train` options for every run, one string (smoke runs: "
                             "a tiny dataset, one epoch)")
    parser.add_argument("--results-dir", default=None, help="write the JSON here instead of benchmarks/results")
    parser.add_argument("--name", default="compare_checkouts",
                        help="the result's name (benchmarks/results/NAME-cpu.json)")
    args = parser.parse_args()
    extra = args.train_args.split()
    rows, same = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.runs):  # a name given twice: measured twice
            results = {}
            for side, checkout in (("old", args.old), ("new", args.new)):
                summary, wall = train(checkout.resolve(), RUNS[name] + extra, Path(tmp) / f"{i}-{name}-{side}",
                                      args.threads)
                results[side] = {**{k: summary.get(k) for k in COMPARED},
                                 "train_time_s": summary.get("train_time_s"), "wall_s": wall,
                                 "commit": git_describe(checkout)}
            equal = all(results["old"][k] == results["new"][k] for k in COMPARED)
            same &= equal
            rows.append({"run": name, "args": RUNS[name] + extra, "identical": equal, **results})
            print(f"{name}: old {100 * results['old']['test_acc']:.2f}% in "
                  f"{results['old']['train_time_s']:.1f} s, new {100 * results['new']['test_acc']:.2f}% "
                  f"in {results['new']['train_time_s']:.1f} s: {'identical' if equal else 'DIFFERENT'}",
                  flush=True)
    write_result(args.name, {"runs": rows, "identical": same, "compared": list(COMPARED),
                                       "threads": args.threads, "machine_otherwise_idle": args.idle},
                 results_dir=args.results_dir)
    return 0 if same else 1


if __name__ == "__main__":
    run_main(main)
