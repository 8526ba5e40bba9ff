"""A 4-run study here, one run after another, against the same study on a local Ray instance
(`cnnbench study run --executor ray`), on this machine.

The study: LeNet-5 on MNIST (``--limit-train`` images, ``--epochs``), four learning rates.
Serially each run gets ``--threads`` threads; on Ray each run is a task of ``--cpus-per-run``
CPUs (and as many threads), as many at once as the machine's cores hold. Both are timed from
the study's start to its end (Ray's start-up included), and their test accuracies compared
(the same seeds; the thread count differs, so the last digits may too).

Run: ``.venv/bin/python benchmarks/study_executors.py`` (a couple of minutes; on a quiet machine).
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

import yaml

from common import run_main, write_result

LRS = (3e-4, 1e-3, 3e-3, 1e-2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2, help="threads of a serial run")
    ap.add_argument("--cpus-per-run", type=int, default=1)
    ap.add_argument("--results-dir", help="where the JSON goes (default benchmarks/results)")
    args = ap.parse_args()
    import ray

    from cnnbench.studies import load_study, run_study
    from cnnbench.studies.cluster import run_on_ray
    from cnnbench.training.rundir import read_summary

    spec = {"name": "four-lrs", "description": "LeNet-5 on MNIST at four learning rates",
            "report": "none",
            "defaults": {"model": "lenet5", "dataset": "mnist", "epochs": args.epochs,
                         "limit_train": args.limit_train, "device": "cpu", "recipe": "none",
                         "optimizer": "adamw", "batch_size": 128},
            "runs": [{"name": f"lr{lr:g}", "step": f"lr {lr:g}", "lr": lr} for lr in LRS]}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "four-lrs.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        serial = load_study(path, profile="full", overrides={"num_threads": args.threads})
        t0 = time.perf_counter()
        run_study(serial, Path(tmp) / "serial", progress=False, log=print)
        rows["serial"] = {"seconds": time.perf_counter() - t0, "threads_per_run": args.threads,
                          "runs_at_once": 1}
        on_ray = load_study(path, profile="full")
        t0 = time.perf_counter()
        from cnnbench.studies.cluster import keep_sigterm

        with keep_sigterm():
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        try:
            run_study(on_ray, Path(tmp) / "ray", progress=False, log=print,
                      execute=functools.partial(run_on_ray, cpus_per_run=args.cpus_per_run))
        finally:
            ray.shutdown()
        rows["ray"] = {"seconds": time.perf_counter() - t0, "threads_per_run": args.cpus_per_run,
                       "runs_at_once": os.cpu_count() // args.cpus_per_run,
                       "includes": "starting and stopping the local Ray instance"}
        for kind in rows:
            rows[kind]["test_acc"] = {r["name"]: read_summary(Path(tmp) / kind / r["name"])["test_acc"]
                                      for r in spec["runs"]}
            rows[kind]["train_time_s"] = {r["name"]: read_summary(Path(tmp) / kind / r["name"])["train_time_s"]
                                          for r in spec["runs"]}
    payload = {"study": spec, "rows": rows, "speedup": rows["serial"]["seconds"] / rows["ray"]["seconds"],
               "note": "the whole study from start to end, each way, on this machine"}
    write_result("study_executors", payload, "cpu", args.results_dir)
    print(f"serial {rows['serial']['seconds']:.1f} s; on Ray {rows['ray']['seconds']:.1f} s "
          f"({payload['speedup']:.2f}x)")
    return 0


if __name__ == "__main__":
    run_main(main)
