"""How long `cnnbench eval --corruptions` takes: all nine corruptions at five severities of
the 10,000 MNIST test images for LeNet-5 (target: under a minute on 2 CPU cores).

It trains LeNet-5 with MNIST's ``fast`` recipe first (or takes ``--run DIR``), then times
:func:`cnnbench.training.corruptions.evaluate_corruptions` ``--repeats`` times in this
process (corrupting the images and evaluating them: 45 x 10,000 images, plus the clean test
set), and writes the accuracies and the seconds, with the machine's load while it ran.

Run: ``.venv/bin/python benchmarks/corruptions_speed.py`` (about a minute; on a quiet machine).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import resolve_recipe, run_main, write_result

TARGET_S = 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a trained run directory (default: train LeNet-5 on MNIST, "
                                  "recipe fast, into a temporary folder)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--results-dir", help="where the JSON goes (default benchmarks/results)")
    args = ap.parse_args()
    from cnnbench.training import train_run
    from cnnbench.training.corruptions import evaluate_corruptions

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "lenet5-mnist-fast"
        if not args.run:
            config = resolve_recipe("fast", "mnist", {"model": "lenet5", "device": args.device,
                                                      "num_threads": args.threads})
            t0 = time.perf_counter()
            train_run(config, out_dir=run, progress=False)
            print(f"trained LeNet-5 (recipe fast) in {time.perf_counter() - t0:.1f} s")
        seconds, result = [], None
        for i in range(args.repeats):
            result = evaluate_corruptions(run, device=args.device, write=False)
            seconds.append(result["seconds"])
            print(f"repeat {i + 1}: {result['seconds']:.1f} s, mean corruption accuracy "
                  f"{100 * result['mean_corruption_acc']:.2f}% (clean {100 * result['clean_acc']:.2f}%)")
    median = statistics.median(seconds)
    payload = {
        "model": result["model"], "dataset": result["dataset"], "test_images": result["n"],
        "corruptions": len(result["accuracy"]), "severities": result["severities"],
        "images_evaluated": result["n"] * (1 + len(result["accuracy"]) * len(result["severities"])),
        "seconds": seconds, "median_s": median, "target_s": TARGET_S, "met": median < TARGET_S,
        "clean_acc": result["clean_acc"], "mean_corruption_acc": result["mean_corruption_acc"],
        "relative_drop": result["relative_drop"], "accuracy": result["accuracy"],
        "threads": args.threads,
        "note": "LeNet-5 trained with MNIST's fast recipe in the same process; the seconds "
                "include opening the checkpoint and the data, corrupting and evaluating",
    }
    write_result("corruptions_speed", payload, args.device, args.results_dir)
    print(f"median {median:.1f} s for {payload['images_evaluated']:,} images "
          f"({'met' if payload['met'] else 'not met'}: target < {TARGET_S:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
