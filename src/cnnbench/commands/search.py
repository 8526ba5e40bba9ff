"""``cnnbench search``: tune training options with Optuna, choosing on validation only."""

from __future__ import annotations

import argparse
import json

from cnnbench.commands import (add_executor_flags, check_executor_flags, examples,
                               stop_on_sigterm)
from cnnbench.commands.train import add_config_flags
from cnnbench.search.backend import PRUNERS  # no Optuna, no torch


SPACE_EXAMPLE = """\
the space (YAML), one line per searched option:
  lr: {low: 1.0e-4, high: 0.1, log: true}     # a float range, log-uniform
  epochs: {low: 2, high: 8}                    # an integer range
  batch_size: [64, 128, 256]                   # a choice
  optimizer: [sgd, adam]
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="tune training options (Optuna: TPE sampler, pruning on validation)",
        description="Search training options with Optuna: each trial trains a run into "
                    "OUT/trial-NNN/ with the base options (the flags and --config, as for "
                    "`cnnbench train`) and values proposed by the TPE sampler from --space; its "
                    "validation accuracy after each epoch lets the pruner stop a poor trial "
                    "early. Trials never see the test set: the best trial (by validation "
                    "accuracy) is tested once at the end, and its config is written to "
                    "OUT/best.yaml for `cnnbench train --config`. The first trial is the base "
                    "options themselves, to show what the search gained. The trials are kept in "
                    "an Optuna database (default sqlite OUT/search.db): running the same command "
                    "again continues the search. OUT/search.md is its report. Needs Optuna "
                    "(pip install 'cnnbench[search]').",
        epilog=SPACE_EXAMPLE + "\n" + examples(
            "cnnbench search --space space.yaml --trials 20 --out runs/search-lenet",
            "cnnbench search --model resnet18 --dataset cifar10_jpeg --limit-train 5000 "
            "--epochs 4 --space lr.yaml --trials 12",
            "cnnbench search --config base.yaml --space space.yaml --storage "
            "postgresql://user@host/db --study-name lab"))
    parser.add_argument("--space", required=True, metavar="FILE",
                        help="YAML file of the searched options and their ranges or choices")
    parser.add_argument("--trials", type=int, default=20, metavar="N",
                        help="finished (completed or pruned) trials to reach (default 20)")
    parser.add_argument("--pruner", choices=PRUNERS, default="median",
                        help="stop poor trials after an epoch: below the median of earlier "
                             "trials at that epoch, by successive halving, or never "
                             "(default median)")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage URL (default sqlite:///OUT/search.db)")
    parser.add_argument("--study-name", default="search", metavar="NAME",
                        help="the search's name in the storage (default search)")
    parser.add_argument("--sampler-seed", type=int, default=0, metavar="N",
                        help="seed of the TPE sampler (default 0); --seed seeds the trials' training")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML file of base options (flags override it)")
    add_executor_flags(parser, "trial", "; --out and the storage must then be reachable "
                                        "from every node")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress of the trials")
    parser.add_argument("--json", action="store_true",
                        help="print the search's result (OUT/search.json) as JSON at the end")
    add_config_flags(parser)
    for action in parser._actions:  # --out is the search's folder here, not one run's
        if action.dest == "out":
            action.help = ("the search's folder: its trials' runs, database, best.yaml and "
                           "report (default runs/search-<model>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.config import FIELDS
    from cnnbench.search import load_space, run_search

    check_executor_flags(args)
    space = load_space(args.space)
    base = {k: v for k, v in vars(args).items() if k in FIELDS}
    out = base.pop("out", None) or f"runs/search-{base.get('model', 'lenet5')}"
    with stop_on_sigterm():
        result = run_search(base, space, out, trials=args.trials, config_file=args.config,
                            storage=args.storage, pruner=args.pruner,
                            sampler_seed=args.sampler_seed, study_name=args.study_name,
                            progress=not args.quiet, argv=args.argv,
                            log=(lambda line: None) if args.json else print,
                            executor=args.executor, address=args.address,
                            cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    best = result["best"]
    print(f"best: trial {best['trial']}, validation accuracy {100 * best['val_acc']:.2f}%, test "
          f"accuracy {100 * best['test_acc']:.2f}% (tested once); config {out}/best.yaml; "
          f"report {out}/search.md")
    return 0
