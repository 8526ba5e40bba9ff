"""CIFAR-10 (JPEG mirror) on the CPU: test accuracy and training time of the `fast` recipe.

Each run is an ordinary ``cnnbench.training.train_run`` of ``--recipe fast --dataset cifar10_jpeg
--val-split 0`` (all 50,000 training images, no selection: the final weights are tested
once, with the recipe's test-time augmentation), so the benchmark measures exactly what
``cnnbench train`` does. From each run's ``summary.json``: ``test_acc``, ``train_time_s``
(epochs plus the whitening initialisation; evaluation and checkpoint writing excluded),
``eval_time_s``, ``train_images_per_s``, and the achieved training GFLOP/s = 6 x forward MACs
summed over the images seen (each at the size it was trained at: progressive resizing makes
the first epochs cheaper) / training seconds (nominal: convolutions and matrix products only,
counting every backward input gradient; whitening and TTA not counted). Several seeds (default 3) per budget; mean ± std per budget.

Budgets: ``default`` is the recipe as it is; ``long`` is the recipe's ``-long`` variant
(``fast`` -> ``fast-long``: a wider network for more epochs) where one is registered, else
the recipe with twice the epochs (and progressive-resizing epochs); ``--long-set`` overrides
apply on top. Targets on 2 threads (issue #33): default >= 90.6% mean (airbench94's own
accuracy on ``cifar10_jpeg``) in <= 450 s of training on average, long >= 92.0% in <= 1,800 s.

The same invocation then times a yardstick, one epoch of airbench94's network and batch on
this CPU (``yardstick.airbench_epoch``, in fp32, and in bf16 too where a run trained in bf16;
``--yardstick-steps`` times fewer steps and scales them
up, 0 skips it), and states each budget's mean training time as a fraction of an
airbench94-length run at that speed (``train_time_in_airbench94_runs``): this machine's speed
drifts by ~1.5x from day to day, the fraction much less.

``--name NAME`` measures a variant: the one ``--budget`` given, with the ``--set`` overrides,
saved under NAME against that budget's targets (e.g. ``--name muon7 --budget default --set
optimizer=muon ...``), so a candidate recipe is measured beside the registered one before it
replaces it.

Results are merged by budget name into ``benchmarks/results/cifar_cpu_time_to_acc-<device>.json``,
so ``--budget default`` and ``--budget long`` (and variants) may run separately; each budget
keeps the environment it was measured in (``environment``: CPU, commit, date, machine load).
The run directories stay
under ``--runs-dir``; rerunning with the same ``--runs-dir`` resumes interrupted runs and
reuses finished ones.

Run (on 2 cores with bf16: about 20 minutes for the default budget's 3 seeds, 50 for the long one):
``.venv/bin/python benchmarks/cifar_cpu_time_to_acc.py --budget default``
Smoke: ``... --seeds 1 --limit-train 512 --limit-eval 500 --epochs 3 --results-dir /tmp/x``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
from pathlib import Path

import torch

from common import environment, parse_sets, resolve_recipe as resolve, result_path, run_main, write_result
from yardstick import airbench_epoch, in_yardstick

TARGETS = {"default": {"target_acc": 0.906, "target_train_s": 450.0},
           "long": {"target_acc": 0.920, "target_train_s": 1800.0}}


def long_recipe(recipe: str) -> str | None:
    """The registered ``<recipe>-long`` variant, or None."""
    from cnnbench.config.recipes import RECIPES

    name = f"{recipe.lower()}-long"
    return name if name in RECIPES else None


def long_overrides(config, sets: list[str], recipe: str) -> dict:
    """What makes the long budget: the ``-long`` recipe (plus ``--long-set`` overrides), else
    ``--long-set`` overrides, else twice the epochs."""
    if long_recipe(recipe):
        return {"recipe": long_recipe(recipe), **parse_sets(sets)}
    if sets:
        return parse_sets(sets)
    if config.batch_schedule:
        doubled = {"batch_schedule": ",".join(f"{b}:{2 * e}" for b, e in config.stages())}
    else:
        doubled = {"epochs": 2 * config.epochs}
    if config.lowres_epochs:  # progressive resizing: the same share of small-image epochs
        doubled["lowres_epochs"] = 2 * config.lowres_epochs
    return doubled


def training_macs(config, run_dir: Path, summary: dict) -> float | None:
    """Forward MACs summed over every training image seen, each at the size it was trained at
    (progressive resizing trains the first ``lowres_epochs`` epochs on smaller images)."""
    macs = summary.get("macs")
    if not macs:
        return None
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    per_epoch = [e["images_seen"] - (epochs[i - 1]["images_seen"] if i else 0) for i, e in enumerate(epochs)]
    small = 0
    if config.lowres_size:
        from cnnbench.data import get_spec
        from cnnbench.models import create_model_for, model_cost

        channels, height, width = summary["input_size"]
        with torch.device("meta"):  # the run's model, as the run builds it
            model = create_model_for(config, get_spec(config.dataset, data_dir=config.data_dir), (height, width))
        small = model_cost(model, channels, (config.lowres_size, config.lowres_size))[1]
    return sum(n * (small if e["epoch"] <= config.lowres_epochs else macs)
               for n, e in zip(per_epoch, epochs))


def summarise(budget: str, runs: list[dict], config, name: str | None = None,
              overrides: dict | None = None) -> dict:
    """One budget's entry: means and spreads over its seeds, against ``budget``'s targets;
    saved as ``name`` (a variant: ``overrides`` on top of the budget) when one is given."""
    def mean(key):
        return statistics.fmean(r[key] for r in runs)

    def std(key):
        return statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0

    entry = {"budget": name or budget, "recipe": config.recipe, "epochs": config.epochs, "model": config.model, "model_kwargs": config.model_kwargs,
             "batch_size": config.batch_size, "batch_schedule": config.batch_schedule, "seeds": len(runs),
             "test_acc_mean": mean("test_acc"), "test_acc_std": std("test_acc"),
             "train_time_s_mean": mean("train_time_s"), "train_time_s_std": std("train_time_s"),
             "eval_time_s_mean": mean("eval_time_s"), "images_per_s_mean": mean("images_per_s"),
             "gflops_per_s_mean": mean("gflops_per_s"), "config": config.to_dict(), "runs": runs}
    if name:
        entry.update(variant_of=budget, overrides=overrides or {})
    if budget in TARGETS:
        t = TARGETS[budget]
        entry.update(t, met=entry["test_acc_mean"] >= t["target_acc"] and
                     entry["train_time_s_mean"] <= t["target_train_s"], target_on="mean")
    return entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="fast", help="recipe to measure (default fast; `none` for flags only)")
    ap.add_argument("--dataset", default="cifar10_jpeg")
    ap.add_argument("--budget", default="default", help="default, long, or both comma-separated")
    ap.add_argument("--name", default=None,
                    help="save the budget as this variant (its settings: --set) against its targets; "
                         "one --budget only")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per budget (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--long-set", action="append", metavar="KEY=VALUE", default=[],
                    help="overrides for the long budget (on top of the -long recipe; without one: "
                         "instead of doubling the epochs)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                    help="override any TrainConfig option in every run (repeatable)")
    ap.add_argument("--epochs", type=int, help="smoke runs: override the epochs")
    ap.add_argument("--limit-train", type=int, help="smoke runs: first N training images only")
    ap.add_argument("--limit-eval", type=int, help="smoke runs: first N test images only")
    ap.add_argument("--runs-dir", default=None,
                    help="where the run directories go (default runs/bench-cifar-<time>); an existing one resumes")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    ap.add_argument("--yardstick-steps", type=int, default=None, metavar="N",
                    help="time N steps of the airbench94 yardstick (default: a whole epoch, 49 "
                         "steps; 0: no yardstick)")
    ap.add_argument("--yardstick-batch", type=int, default=None, help=argparse.SUPPRESS)  # smoke runs
    ap.add_argument("--results-dir", default=None, help="write the JSON here instead of benchmarks/results")
    args = ap.parse_args()

    from cnnbench.training import train_run

    torch.set_num_threads(args.threads)
    budgets = [b.strip() for b in args.budget.split(",") if b.strip()]
    for b in budgets:
        if b not in ("default", "long"):
            raise SystemExit(f"unknown budget {b!r}; use default, long or default,long")
    if args.name is not None:
        if len(budgets) != 1 or args.name in ("default", "long") or not args.name.replace("-", "").isalnum():
            raise SystemExit(f"--name {args.name!r} names one variant of one --budget: letters, digits "
                             f"and '-', not default or long (e.g. --name muon7 --budget default)")
    sets = parse_sets(args.set)
    for key in ("epochs", "limit_train", "limit_eval"):
        if getattr(args, key) is not None:
            sets[key] = str(getattr(args, key))
    base = {"val_split": 0, "num_threads": args.threads, "device": args.device, **sets}
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = Path(args.runs_dir or f"runs/bench-cifar-{stamp}")

    default_config = resolve(args.recipe, args.dataset, base)
    entries, last_config = {}, default_config
    for budget in budgets:
        extra = long_overrides(default_config, args.long_set, args.recipe) if budget == "long" else {}
        runs = []
        for seed in range(args.seeds):
            config = resolve(extra.get("recipe", args.recipe), args.dataset,
                             {**base, **{k: v for k, v in extra.items() if k != "recipe"}, "seed": seed})
            last_config = config
            out = runs_dir / f"{args.name or budget}-seed{seed}"
            resume = (out / "config.yaml").exists()
            print(f"== budget {args.name or budget}, seed {seed}: recipe {config.recipe}, {config.model} {config.model_kwargs}, "
                  f"{config.epochs} epochs, batch {config.batch_size}, amp {config.amp}, tta {config.tta} -> {out}{' (resuming)' if resume else ''}", flush=True)
            summary = train_run(config, out_dir=out, resume=resume, progress=not args.quiet,
                                argv=[sys.executable, *sys.argv])
            macs, seen, train_s = summary.get("macs"), summary["images_seen"], summary["train_time_s"]
            image_macs = training_macs(config, out, summary)
            run = {"seed": seed, "test_acc": summary["test_acc"], "test_loss": summary["test_loss"],
                   "train_time_s": train_s, "eval_time_s": summary["eval_time_s"],
                   "images_per_s": summary["train_images_per_s"], "images_seen": seen,
                   "gflops_per_s": 6 * image_macs / train_s / 1e9 if image_macs and train_s else None,
                   "macs": macs, "params": summary.get("params"), "amp": summary.get("amp"), "epochs_completed": summary["epochs_completed"],
                   "run_dir": str(out), "limited": summary.get("limited", False)}
            runs.append(run)
            print(f"   test acc {100 * run['test_acc']:.2f}% | train {train_s:.1f} s ({run['images_per_s']:.0f} img/s, "
                  f"{run['gflops_per_s'] or 0:.1f} GFLOP/s) | eval {run['eval_time_s']:.1f} s", flush=True)
        e = summarise(budget, runs, config, args.name, sets if args.name else None)
        entries[e["budget"]] = e
        print(f"budget {e['budget']}: test acc {100 * e['test_acc_mean']:.2f} ± {100 * e['test_acc_std']:.2f}% over "
              f"{len(runs)} seeds, train {e['train_time_s_mean']:.0f} ± {e['train_time_s_std']:.0f} s"
              + (f" (target >= {100 * e['target_acc']:.1f}% in <= {e['target_train_s']:.0f} s: "
                 f"{'met' if e['met'] else 'MISSED'})" if "met" in e else ""), flush=True)

    if args.yardstick_steps != 0:
        batch = {"batch": args.yardstick_batch} if args.yardstick_batch else {}
        # fp32 always (airbench94's precision on a CPU); bf16 too where a run trained in it: a
        # VM's bf16 speed need not drift with its fp32 speed (yardstick.py)
        precisions = ["off"] + (["bf16"] if any(r.get("amp") == "bf16" for e in entries.values()
                                                for r in e["runs"]) else [])
        for amp in precisions:
            yardstick = airbench_epoch(args.threads, args.yardstick_steps, amp=amp, **batch)
            label, suffix = ("fp32", "") if amp == "off" else ("bf16", "_bf16")
            print(f"yardstick ({label}): an epoch of airbench94's network and batch took "
                  f"{yardstick['epoch_s']:.1f} s here (an airbench94-length run: "
                  f"{yardstick['airbench94_run_s']:.0f} s)", flush=True)
            for e in entries.values():  # the budgets trained in this invocation
                ratio = in_yardstick(e["train_time_s_mean"], yardstick)
                e[f"airbench94_yardstick{suffix}"], e[f"train_time_in_airbench94_runs{suffix}"] = yardstick, ratio
                print(f"budget {e['budget']}: mean training {ratio:.4f} of an airbench94-length run of "
                      f"the {label} yardstick", flush=True)
    for e in entries.values():  # where and when each budget of this invocation was measured
        e["environment"] = environment(args.device)

    # Merge with the budgets of an earlier invocation (same recipe and dataset, full data only).
    limited = bool(last_config.limit_train or last_config.limit_eval)
    path = result_path("cifar_cpu_time_to_acc", args.device, args.results_dir)
    overrides = {} if args.name else sets  # a variant's own are in its budget
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if (old.get("recipe"), old.get("dataset"), old.get("limited")) == (args.recipe, args.dataset, limited):
                for b in old.get("budgets", []):
                    # budgets from before each kept its own environment were measured in the
                    # file's: keep it with them, as the file's is now this invocation's
                    b.setdefault("environment", old.get("environment"))
                    entries.setdefault(b["budget"], b)
                if args.name:
                    overrides = old.get("overrides", {})
        except (ValueError, KeyError, TypeError):
            pass
    order = {"default": 0, "long": 1}
    write_result("cifar_cpu_time_to_acc", {
        "recipe": args.recipe, "dataset": args.dataset, "num_threads": args.threads, "tta": default_config.tta,
        "limited": limited, "overrides": overrides,
        "budgets": sorted(entries.values(), key=lambda e: order.get(e["budget"], 9)),
    }, args.device, args.results_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
