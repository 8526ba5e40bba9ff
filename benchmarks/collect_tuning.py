"""Record recipe-tuning runs (trained on a validation split) as a benchmark result.

A recipe's documentation quotes the validation accuracies its choices were based on; this
script keeps those numbers in a file under ``benchmarks/results/`` with what produced them:
for each run directory, the resolved options that differ between the runs, the validation
accuracy and loss of every epoch, the epoch times and the training time. Test accuracy is
deliberately left out: tuning looks at validation only.

Run: ``.venv/bin/python benchmarks/collect_tuning.py --name cifar_fast_tuning runs/tune/*``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_result

from cnnbench.training.rundir import CONFIG, METRICS, read_jsonl, read_summary, read_yaml
from cnnbench.config import RESUMABLE_CHANGES


def read_run(run_dir: Path) -> dict:
    config = read_yaml(run_dir / CONFIG)
    epochs = read_jsonl(run_dir / METRICS)
    if not config or not epochs:
        raise SystemExit(f"{run_dir} has no config.yaml or no finished epoch")
    if epochs[-1].get("val_acc") is None:
        raise SystemExit(f"{run_dir} has no validation split: it is not a tuning run")
    summary = read_summary(run_dir) or {}
    return {"run_dir": str(run_dir), "config": config, "status": summary.get("status", "unfinished"),
            "final_val_acc": epochs[-1]["val_acc"], "final_val_loss": epochs[-1]["val_loss"],
            "train_time_s": summary.get("train_time_s"),
            "epochs": [{k: e.get(k) for k in ("epoch", "val_acc", "val_loss", "train_loss", "epoch_time_s",
                                             "train_images_per_s")} for e in epochs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--name", required=True, help="result name, e.g. cifar_fast_tuning")
    ap.add_argument("--note", default="", help="what the runs compared and what was chosen")
    ap.add_argument("--results-dir", default=None, help="write the JSON here instead of benchmarks/results")
    args = ap.parse_args()
    runs = [read_run(d) for d in args.run_dirs]
    keys = sorted({k for r in runs for k in r["config"]})
    differing = [k for k in keys if len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1
                 and k not in RESUMABLE_CHANGES]  # where and how fast, not what is trained
    for r in runs:
        r["differs"] = {k: r["config"].get(k) for k in differing}
        print(f"{r['run_dir']}: val acc {100 * r['final_val_acc']:.2f}% after {len(r['epochs'])} epochs "
              f"| {r['differs']}")
    write_result(args.name, {"note": args.note, "differing_options": differing, "runs": runs},
                 results_dir=args.results_dir)


if __name__ == "__main__":
    main()
