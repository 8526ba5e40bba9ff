"""``cnnbench train``: train one model on one dataset into a run directory.

Every :class:`cnnbench.config.TrainConfig` field is a flag (``--batch-size`` and
``--batch_size``; booleans also as ``--no-FLAG``), plus the reports' spellings ``--epoch`` and
``--reg``. Flags override ``--config FILE``, which overrides ``--recipe NAME``, which
overrides the built-in defaults. ``--resume DIR`` continues an interrupted run. Under
``torchrun --nproc_per_node=N -m cnnbench train ...`` the run trains in N processes
(:mod:`cnnbench.training.distributed`); a process's failure is one line, said once.
"""

from __future__ import annotations

import argparse
import json
import sys

from cnnbench.commands import examples, stop_on_sigterm
from cnnbench.config import ALIASES, field_info

_GROUP_TITLES = {
    "model and data": "model and data",
    "fine-tuning": "fine-tuning and transfer (README: Fine-tuning)",
    "training": "training length and batch",
    "optimizer": "optimizer (what weight decay means per optimizer: src/cnnbench/training/optim.py)",
    "schedule": "learning-rate schedule and early stopping",
    "techniques": "fast-training techniques (docs/techniques.md)",
    "machine": "device, precision and reproducibility",
    "output": "run directory and logging",
}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, each defaulting to "not given" (argparse.SUPPRESS)."""
    from cnnbench.config.recipes import DEFAULT

    recipe_defaults = dict(DEFAULT.defaults)
    groups = {key: parser.add_argument_group(title) for key, title in _GROUP_TITLES.items()}
    aliases: dict[str, list[str]] = {}
    for alias, name in ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    from cnnbench.data.specs import list_datasets

    datasets = ", ".join(list_datasets())  # from the registry, never typed in a help text
    for f in field_info():
        meta = {**f.metadata, "help": f.metadata["help"].replace("{datasets}", datasets)}
        names = [f.name.replace("_", "-")]
        if "_" in f.name:
            names.append(f.name)
        names += aliases.get(f.name, [])
        flags = [f"--{n}" for n in names]
        group = groups[meta.get("group", "training")]
        default = f.default if f.default is not f.default_factory else None
        if callable(f.default_factory):  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        if f.name in recipe_defaults and recipe_defaults[f.name] != default:
            help_text = (f"{meta['help']} (default: {recipe_defaults[f.name]} from the default "
                         f"recipe; {default} with --recipe none)")
        elif default is None:  # the help says what unset means
            help_text = meta["help"]
        else:
            help_text = f"{meta['help']} (default: {default})"
        if f.type in ("bool", bool):
            group.add_argument(*flags, dest=f.name, action="store_const", const=True,
                               default=argparse.SUPPRESS, help=help_text)
            if not f.name.startswith("no_"):
                group.add_argument(f"--no-{names[0]}", dest=f.name, action="store_const",
                                   const=False, default=argparse.SUPPRESS,
                                   help=f"turn --{names[0]} off")
        else:
            choices = meta.get("choices")
            group.add_argument(*flags, dest=f.name, default=argparse.SUPPRESS,
                               metavar=None if choices else (meta.get("metavar") or f.name.upper()),
                               choices=choices, type=str.lower if choices else None,
                               help=help_text)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on a dataset (no options: LeNet-5 on MNIST)",
        description="Train one model on one dataset into a run directory (its options, logs, "
                    "checkpoints and test accuracy; default runs/<model>-<dataset>-<time>). "
                    "With no options: LeNet-5 on MNIST on the CPU (the `default` recipe), "
                    "under a minute. Options override --config FILE, which overrides --recipe "
                    "NAME, which overrides the built-in defaults (`--recipe none` for the plain "
                    "defaults). Options may also be written with underscores (--batch_size); "
                    "--resume DIR continues an interrupted run. Started by `torchrun "
                    "--nproc_per_node=N -m cnnbench train ...`, it trains in N processes with "
                    "DistributedDataParallel; --batch-size is then the global batch of all "
                    "processes together.",
        epilog=examples("cnnbench train",
                        "cnnbench train --model resnet18 --dataset cifar10 --epochs 30",
                        "torchrun --nproc_per_node=2 -m cnnbench train --device cpu --epochs 1"))
    parser.add_argument("--config", metavar="FILE", help="YAML file of options (same keys as the "
                        "flags, with _); flags override it")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                        help="continue the interrupted run in DIR (or in --out) from its last "
                             "completed epoch, with its saved config")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--json", action="store_true",
                        help="print the run's summary (summary.json) as JSON on stdout when it "
                             "ends; progress stays on stderr")
    add_config_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.errors import UserError
    from cnnbench.training import distributed

    try:
        with stop_on_sigterm():
            return _train(args)
    except UserError as exc:  # under torchrun: said once, by rank 0 if every process failed
        distributed.defer_report(exc)
        raise
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the job: rank 0 says it
        launch = distributed.torchrun_launch()
        if launch is not None and launch.rank != 0:
            return 130
        raise


def _train(args: argparse.Namespace) -> int:
    from cnnbench.config import FIELDS, normalize_keys
    from cnnbench.errors import UserError
    from cnnbench.training import distributed, train_run

    launch = distributed.torchrun_launch()
    main = launch is None or launch.rank == 0  # the process that prints (and writes)

    if args.resume:
        from cnnbench.training.rundir import plan_run, saved_config

        out = args.resume if isinstance(args.resume, str) else getattr(args, "out", None)
        if out is None:
            raise UserError("--resume needs the run directory: --resume DIR (or --out DIR)")
        if getattr(args, "config", None):
            raise UserError("--resume continues the run with its saved config; drop --config")
        saved = saved_config(out)
        given = normalize_keys({k: v for k, v in vars(args).items() if k in FIELDS and k != "out"})
        # Flags equal to the saved values are fine; any that change the run are refused.
        config = saved.replace(**given) if given else saved
        plan = plan_run(config, out, resume=True)
        if plan.state == "finished":
            acc = plan.summary.get("test_acc")
            if main and args.json:
                print(json.dumps(plan.summary, indent=2))
            elif main:
                print(f"{out} is already finished (test accuracy {100 * acc:.2f}%); nothing to "
                      f"resume" if acc is not None else f"{out} is already finished; nothing to "
                      f"resume")
            return 0
        if plan.state == "fresh" and main:
            print(f"{out}: no epoch had finished (no last.ckpt), so the run starts again from "
                  f"epoch 1", file=sys.stderr)
        summary = train_run(config, out_dir=out, resume=True, argv=args.argv,
                            progress=not args.quiet)
    else:
        from cnnbench.config.resolve import config_from_args

        config = config_from_args(args)
        summary = train_run(config, argv=args.argv, progress=not args.quiet)
    if main and args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if not args.quiet or not main:  # the run's own last line already said it, once
        return 0
    acc = summary.get("test_acc")
    print(f"{summary['name']}: test accuracy {100 * acc:.2f}% ({summary.get('tested_weights')} "
          f"weights), training {summary['train_time_s']:.1f} s -> {summary.get('run_dir')}"
          if acc is not None else f"{summary['name']}: {summary.get('status')}")
    return 0
