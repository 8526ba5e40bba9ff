"""Profile cnnbench's training step on the CPU: where does the time go?

Runs ``torch.profiler`` over a few training steps of a model fed by cnnbench's TensorLoader
(the real path: loader, forward, loss, backward, optimizer) and prints the operators that take
the most self CPU time, grouped into convolution, BatchNorm/activation/pooling, linear,
optimizer, data and other. Writes ``benchmarks/results/profile_step-<model>-cpu.json``.

Run: ``.venv/bin/python benchmarks/profile_step.py --model lenet5 --dataset mnist``
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
import yaml
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cnnbench.data import TensorLoader, get_spec
from cnnbench.models import create_model

from common import run_main, write_result

GROUPS = [
    ("convolution", ("conv", "mkldnn_convolution")),
    ("batchnorm/activation/pool", ("batch_norm", "relu", "gelu", "tanh", "sigmoid", "pool", "threshold")),
    ("linear", ("addmm", "mm", "linear")),
    ("optimizer", ("_foreach", "adamw", "sgd", "lerp", "addcdiv", "addcmul")),
    ("data (index, normalise, augment)", ("index", "randperm", "sub", "div", "flip", "gather", "to", "copy_", "where")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
]


def group_of(name: str) -> str:
    low = name.lower()
    for group, keys in GROUPS:
        if any(k in low for k in keys):
            return group
    return "other"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--dataset", default="mnist", help="only its spec (shape, mean/std) is used; pixels are random")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--model-kwargs", default="{}", help='YAML mapping, e.g. "{activation: relu, pool: max}"')
    ap.add_argument("--results-dir", default=None, help="write the JSON here instead of benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_spec(args.dataset)
    n = args.batch_size * (args.steps + 5)
    x = torch.randint(0, 256, (n, spec.channels, *spec.image_size), dtype=torch.uint8)
    y = torch.randint(0, spec.num_classes, (n,))
    model = create_model(args.model, num_classes=spec.num_classes, in_chans=spec.channels,
                         input_size=spec.image_size, **yaml.safe_load(args.model_kwargs)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = TensorLoader(x, y, batch_size=args.batch_size, shuffle=True, seed=0, mean=spec.mean, std=spec.std,
                          augment=args.augment, channels_last=True)

    def steps(k):
        it = iter(loader)
        for _ in range(k):
            xb, yb = next(it)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    steps(5)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        steps(args.steps)
    totals: dict[str, float] = defaultdict(float)
    top = []
    for evt in prof.key_averages():
        if evt.key.startswith("ProfilerStep"):
            continue
        totals[group_of(evt.key)] += evt.self_cpu_time_total
        top.append((evt.self_cpu_time_total, evt.key))
    whole = sum(totals.values())
    shares = {g: t / whole for g, t in sorted(totals.items(), key=lambda kv: -kv[1])}
    for g, share in shares.items():
        print(f"{g:36s} {share * 100:5.1f}%")
    top.sort(reverse=True)
    print("top operators (self CPU time):")
    for t, key in top[:12]:
        print(f"  {key:40s} {t / whole * 100:5.1f}%")
    write_result(f"profile_step-{args.model}", {
        "model": args.model, "dataset_spec": args.dataset, "batch_size": args.batch_size, "steps": args.steps,
        "augment": args.augment, "model_kwargs": yaml.safe_load(args.model_kwargs), "num_threads": args.threads, "group_shares": shares,
        "top_ops": [{"op": k, "share": t / whole} for t, k in top[:12]],
    }, results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
