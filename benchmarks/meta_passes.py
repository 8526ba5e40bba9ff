"""What the shape-only passes on the meta device cost, with and without ``shapes_only``.

A model built on the meta device (parameter and MAC counts, ``cnnbench models`` without the
catalog, study estimates) runs its input-size check as a forward pass there, and every MAC count
runs one more. On meta tensors PyTorch computes BatchNorm and the weights' random fills in
Python reference code; :class:`cnnbench.models.common.shapes_only` skips both (BatchNorm's
checks kept). This script times, alternating, the passes as shipped and the same passes with the
mode switched off (``registry.shapes_only`` and ``profile.shapes_only`` made no-ops): building
each model on the meta device, then counting its MACs. CPU seconds of this process
(``time.process_time``); the MAC counts of both must be equal.

Run: ``.venv/bin/python benchmarks/meta_passes.py`` (about a minute; on a quiet machine).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from common import run_main, write_result

MODELS = ["resnet152", "resnet50", "vgg19_bn", "googlenet", "mobilenet_v2", "alexnet"]


def timed(names: list[str], size: int) -> tuple[float, float, dict[str, int]]:
    """CPU seconds to build ``names`` on the meta device at ``size`` px, and to count their
    MACs; the counts."""
    from cnnbench.models import create_model
    from cnnbench.models.profile import count_macs

    t0 = time.process_time()
    with torch.device("meta"):
        models = {n: create_model(n, num_classes=10, in_chans=3, input_size=size) for n in names}
    t1 = time.process_time()
    macs = {n: count_macs(m, (3, size, size)) for n, m in models.items()}
    return t1 - t0, time.process_time() - t1, macs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--results-dir", help="write the JSON here instead of benchmarks/results/")
    ap.add_argument("--note", default="", help="recorded in the JSON")
    args = ap.parse_args()

    from cnnbench.models import profile, registry

    shipped = registry.shapes_only
    timed(args.models[:1], args.size)  # the first pass imports PyTorch's meta kernels
    seconds = {"shapes_only": {"build": [], "count": []}, "off": {"build": [], "count": []}}
    counts = {}
    for _ in range(args.repeats):
        for variant in ("shapes_only", "off"):  # alternating: a slow moment hits both
            mode = shipped if variant == "shapes_only" else contextlib.nullcontext
            registry.shapes_only = profile.shapes_only = mode
            try:
                build, count, macs = timed(args.models, args.size)
            finally:
                registry.shapes_only = profile.shapes_only = shipped
            seconds[variant]["build"].append(round(build, 4))
            seconds[variant]["count"].append(round(count, 4))
            counts[variant] = macs
    same = counts["shapes_only"] == counts["off"]
    rows = {v: {part: {"median_s": round(statistics.median(s), 4), "min_s": min(s),
                       "max_s": max(s), "all_s": s} for part, s in parts.items()}
            for v, parts in seconds.items()}
    for v, parts in rows.items():
        print(f"{v:<12} build {parts['build']['median_s']:.3f} s, count MACs "
              f"{parts['count']['median_s']:.3f} s (median of {args.repeats}, CPU seconds)")
    print(f"MAC counts equal: {same}")
    write_result("meta_passes", {
        "models": args.models, "input": [3, args.size, args.size], "repeats": args.repeats,
        "seconds": "CPU seconds of this process for all the models together",
        "variants": rows, "macs": counts["shapes_only"], "macs_equal": same,
        "note": args.note}, results_dir=args.results_dir)
    return 0 if same else 1


if __name__ == "__main__":
    run_main(main)
