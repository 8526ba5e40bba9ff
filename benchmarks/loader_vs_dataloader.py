"""Epoch time of LeNet-5 on MNIST fed by cnnbench's TensorLoader vs torchvision Dataset + DataLoader.

Same model, same optimizer, same batch size, same training loop; only the input pipeline
differs. The reference pipeline is what the lab reports wrote: ``torchvision.datasets.MNIST``
with ``ToTensor() + Normalize()`` behind a ``DataLoader`` (num_workers 0, 1 and 2).

Run: ``.venv/bin/python benchmarks/loader_vs_dataloader.py`` (needs MNIST: see `cnnbench datasets`).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

from cnnbench.data import TensorLoader, get_spec, load_dataset
from cnnbench.data.datasets import find_dataset
from cnnbench.models import create_model

from common import run_main, write_result


def torchvision_root(tmp: Path) -> Path:
    """A torchvision-layout MNIST root (decompressed raw files) built in a temp dir from the data root."""
    src = find_dataset("mnist")  # <root>/MNIST/raw, by the rule every entry point uses
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in src.glob("*.gz"):
        with gzip.open(gz) as fin, open(raw / gz.name[:-3], "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return tmp


def train_epoch(model, opt, batches) -> tuple[float, int]:
    model.train()
    n = 0
    t0 = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    return time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="epochs timed per pipeline (median reported)")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--results-dir", default=None, help="write the JSON here instead of benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_spec("mnist")
    ds = load_dataset("mnist")

    def fresh_model():
        torch.manual_seed(0)
        model = create_model("lenet5", num_classes=10, in_chans=1, input_size=28, activation="relu", pool="max")
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    rows = []
    model, opt = fresh_model()
    loader = TensorLoader(ds.train_x, ds.train_y, batch_size=args.batch_size, shuffle=True, seed=0,
                          mean=spec.mean, std=spec.std)
    times = []
    for epoch in range(args.repeats):
        loader.set_epoch(epoch)
        dt, n = train_epoch(model, opt, loader)
        times.append(dt)
        print(f"cnnbench TensorLoader  epoch {epoch}: {dt:.2f} s ({n / dt:.0f} img/s)", flush=True)
    rows.append({"pipeline": "cnnbench TensorLoader", "epoch_time_s": statistics.median(times), "images": n})

    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
        dataset = torchvision.datasets.MNIST(root, train=True, transform=tf, download=False)
        for workers in [int(w) for w in args.workers.split(",")]:
            model, opt = fresh_model()
            dl = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                             persistent_workers=workers > 0)
            times = []
            for epoch in range(args.repeats):
                dt, n = train_epoch(model, opt, dl)
                times.append(dt)
                print(f"DataLoader(num_workers={workers}) epoch {epoch}: {dt:.2f} s ({n / dt:.0f} img/s)", flush=True)
            rows.append({"pipeline": f"torchvision Dataset + DataLoader(num_workers={workers})",
                         "epoch_time_s": statistics.median(times), "images": n})

    ours = rows[0]["epoch_time_s"]
    for r in rows:
        r["images_per_s"] = r["images"] / r["epoch_time_s"]
        r["speedup_of_cnnbench"] = r["epoch_time_s"] / ours
    best_reference = min(r["epoch_time_s"] for r in rows[1:])
    ratio = best_reference / ours
    print(f"cnnbench loader is {ratio:.2f}x faster than the best DataLoader setting (target >= 2.5x)")
    write_result("loader_vs_dataloader", {
        "model": "lenet5", "dataset": "mnist", "batch_size": args.batch_size, "num_threads": args.threads,
        "repeats": args.repeats, "rows": rows, "speedup_vs_best_dataloader": ratio, "target_speedup": 2.5,
    }, "cpu", args.results_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
