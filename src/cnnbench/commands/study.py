"""``cnnbench study list|show|run``: the lab reports' experiments, one command each."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from cnnbench.commands import (add_executor_flags, check_executor_flags, examples, number_text,
                               stop_on_sigterm)
from cnnbench.config import TrainConfig
from cnnbench.errors import UserError
from cnnbench.studies.spec import PROFILES, find_study, list_studies, load_study, select_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "study", help="run a lab report's experiment (several runs), then its report",
        description="A study is a YAML file of training runs: the experiment of one lab report "
                    "(`cnnbench study list` shows the shipped ones). `study show` prints its "
                    "runs and their estimated time; `study run` trains each into OUT/<run>/, "
                    "skipping runs that finished before, and writes OUT/report.md, report.html, "
                    "results.csv and reproduction.csv.",
        epilog=examples("cnnbench study list",
                        "cnnbench study show mnist-five --profile cpu",
                        "cnnbench study run mnist-five --out runs/mnist-five"))
    sub = parser.add_subparsers(title="actions", dest="study_command", metavar="ACTION",
                                required=True)

    study_list = sub.add_parser(
        "list", help="the shipped studies",
        description="List the studies shipped with cnnbench, one line each; `cnnbench study "
                    "show NAME` shows one.",
        epilog=examples("cnnbench study list", "cnnbench study list --json"))
    study_list.add_argument("--json", action="store_true", help="print JSON instead of text")
    study_list.set_defaults(func=_list)

    show = sub.add_parser(
        "show", help="the runs of a study and their resolved options",
        description="Show a study's runs, each with its resolved train options and an estimate "
                    "of its training time on 2 CPU cores, and the total; nothing is trained. "
                    "Every run's options are checked first, so a mistake in the study file or in "
                    "--set ends in one line.",
        epilog=examples("cnnbench study show mnist-five",
                        "cnnbench study show mnist-five --profile cpu --seeds 3",
                        "cnnbench study show my-study.yaml --set device=cuda"))
    _study_arguments(show)
    show.set_defaults(func=_show)

    run = sub.add_parser(
        "run", help="train a study's runs and write its report",
        description="Train a study's runs into OUT/<run>/ (default OUT: runs/<study>), skipping "
                    "runs that finished before, so running it again resumes it; then write "
                    "OUT/report.md, report.html, results.csv and reproduction.csv. If a run fails, the others "
                    "still run, its error.txt says why and the exit status is 1.",
        epilog=examples("cnnbench study run mnist-five --profile quick",
                        "cnnbench study run mnist-five --out runs/mnist-five",
                        "cnnbench study run cifar10-tricks --nproc 2 --set device=cuda"))
    _study_arguments(run)
    run.add_argument("--out", metavar="DIR",
                     help="output directory (default runs/<study>); re-running resumes it")
    run.add_argument("--only", nargs="+", metavar="RUN",
                     help="run only these runs (names or shell patterns; the runs they start "
                          "from are added)")
    run.add_argument("--nproc", type=int, default=1, metavar="N",
                     help="train each run in N processes on this machine (torchrun, "
                          "DistributedDataParallel; --batch-size stays the global batch)")
    add_executor_flags(run, "run", "; --out must then be a folder every node shares")
    run.add_argument("--no-report", action="store_true", help="do not write the report")
    run.add_argument("--no-figures", dest="figures", action="store_false",
                     help="write the report without figures (cnnbench report --no-figures)")
    run.add_argument("--no-run-figures", dest="run_figures", action="store_false",
                     help="write the report without each run's confusion matrix and gallery "
                          "(cnnbench report --no-run-figures)")
    run.add_argument("--corruptions", action="store_true",
                     help="also evaluate every finished run under the common corruptions "
                          "(cnnbench eval --corruptions; runs that have corruptions.json keep it)")
    run.add_argument("--corruption-images", type=int, metavar="N",
                     help="with --corruptions: only N of each run's test images, drawn at random")
    run.add_argument("--latency", action="store_true",
                     help="also measure every finished run's inference latency and throughput "
                          "on this machine (cnnbench eval --latency), for the report's cost view")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="NAME|FILE.yaml", help="a shipped study or a study file")
    parser.add_argument("--profile", choices=PROFILES,
                        help="quick: a few hundred images, 1 epoch (smoke test); cpu: the "
                             "report's recipe capped to fit about 30 min on 2 CPU cores; full: "
                             "the report's recipe. Default: full with a GPU, cpu without one")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="seeds per run (seed, seed+1, ...); reported as mean ± std")
    parser.add_argument("--dataset", metavar="NAME",
                        help="dataset to use instead (for CIFAR-10 studies: cifar10_jpeg when "
                             "the official cifar10 files are absent)")
    parser.add_argument("--data-dir", metavar="DIR", help="data root for every run")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a train option in every run (YAML value), e.g. "
                             "--set device=cuda --set amp=bf16")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (progress "
                                                            "stays on stderr)")


def _load(args):
    overrides = _parse_overrides(args.overrides)
    profile = args.profile
    if profile is None:
        find_study(args.study)  # an unknown study is said before the profile line
        profile, why = default_profile(overrides)
        print(f"profile {profile}: {why}", file=sys.stderr if args.json else sys.stdout)
    return load_study(args.study, profile=profile, seeds=args.seeds, dataset=args.dataset,
                      overrides=overrides, data_dir=args.data_dir)


def default_profile(overrides: dict) -> tuple[str, str]:
    """``full`` where the runs will get a GPU, else ``cpu``; and a line saying why."""
    import torch

    device = str(overrides.get("device", "auto"))
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "full", "a GPU is available, so the reports' full recipes run (--profile to choose)"
    return "cpu", ("no GPU here, so the reports' recipes run capped to fit about 30 min on 2 CPU "
                   "cores; --profile full runs them whole (see its estimate with `cnnbench study "
                   "show NAME --profile full`)")


def _estimates(study, runs=None) -> tuple[list, str]:
    """The cost estimate of each of ``runs`` (default: all; checking their options first) and
    the total as text."""
    from cnnbench.devices import cpu_name
    from cnnbench.studies import throughput
    from cnnbench.studies.estimate import duration_text, estimate_seconds

    costs = [estimate_seconds(run.options, where=study.where(run))
             for run in (study.runs if runs is None else runs)]
    known = [c.seconds for c in costs if c is not None]
    measured = throughput.measured_cpus()
    unknown = len(costs) - len(known)
    text = (f"{duration_text(sum(known))} on 2 CPU cores (estimate from each model's speed "
            f"measured on this project's 2-core CPU, {' and '.join(measured)}: in bf16 for "
            f"--amp auto or bf16, else fp32; or its MACs; a GPU is much faster)"
            + (f"; {unknown} runs on datasets of unknown size not counted" if unknown else ""))
    here = cpu_name()
    if here not in measured:
        text += (f"; this machine's CPU is another ({here}): its speed, and what --amp auto "
                 f"picks on it, may differ")
    return costs, text


def _parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: write KEY=VALUE, e.g. --set epochs=2")
        key = key.strip().replace("-", "_")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: {value!r} is not a valid YAML value") from None
        field = TrainConfig.__dataclass_fields__.get(key)
        if isinstance(parsed, bool) and field is not None and field.type == "str":
            parsed = value.strip()  # YAML reads off/on/no/yes as booleans: `--set amp=off`
        overrides[key] = parsed
    return overrides


def _list(args) -> int:
    studies = list_studies()
    if args.json:
        print(json.dumps({"studies": [{"name": n, "description": d} for n, d in studies]},
                         indent=2))
        return 0
    width = max(len(name) for name, _ in studies)
    for name, description in studies:
        print(f"{name:<{width}}  {description}")
    return 0


def _show(args) -> int:
    study = _load(args)
    # every run's options are checked (by the estimate) before anything is printed
    costs, total_text = _estimates(study)
    if args.json:
        print(json.dumps({
            "study": study.name, "source": str(study.source), "profile": study.profile,
            "estimate": total_text,
            "runs": [{"name": run.name, "init": run.init, "step": run.step,
                      "differs": run.differs, "options": run.options,
                      "references": [{"metric": r.metric, "value": r.value} for r in run.references],
                      "estimated_seconds": cost.seconds if cost is not None else None}
                     for run, cost in zip(study.runs, costs)]}, indent=2, default=str))
        return 0
    print(f"study {study.name} ({study.source}), profile {study.profile}, "
          f"{len(study.runs)} runs")
    for run, cost in zip(study.runs, costs):
        extra = [f"init {run.init}"] if run.init else []
        extra += [f"step {run.step!r}"] if run.step else []
        extra += [f"reference {number_text(ref.value)} ({ref.metric})" for ref in run.references]
        extra += [f"differs: {run.differs}"] if run.differs else []
        print(f"\n{run.name}" + (f"  [{'; '.join(extra)}]" if extra else ""))
        for key, value in run.options.items():
            print(f"  {key}: {value}")
        if cost is not None:
            print(f"  time: {cost.text()}")
    print(f"\ntotal: {total_text}")
    return 0


def _corrupt_finished(outcomes, log, images: int | None = None) -> None:
    """`eval --corruptions [--images N]` of every finished run without a ``corruptions.json``."""
    from cnnbench.training.corruptions import evaluate_corruptions
    from cnnbench.training.rundir import CORRUPTIONS_FILE as RESULT_FILE

    for o in outcomes:
        if o.status not in ("finished", "done-before") or (o.run_dir / RESULT_FILE).exists():
            continue
        result = evaluate_corruptions(o.run_dir, images=images)
        log(f"{o.run.name}: under corruption {100 * result['mean_corruption_acc']:.2f}% "
            f"(clean {100 * result['clean_acc']:.2f}%; {result['seconds']:.0f} s) -> "
            f"{o.run_dir / RESULT_FILE}")


def _time_finished(outcomes, log) -> None:
    """`eval --latency` of every finished run (measured again: a machine's numbers are its own)."""
    from cnnbench.inference.latency import measure_checkpoint
    from cnnbench.training.rundir import LATENCY_FILE as RESULT_FILE

    for o in outcomes:
        if o.status not in ("finished", "done-before"):
            continue
        result = measure_checkpoint(o.run_dir)
        log(f"{o.run.name}: {result['eager']['batch1_ms']:.2f} ms per image at batch 1 "
            f"(PyTorch) -> {o.run_dir / RESULT_FILE}")


def _executor(args):
    """``run_study``'s ``execute`` for ``--executor``: None (here, one after another) or Ray."""
    check_executor_flags(args)
    if args.executor == "local":
        return None
    import functools

    from cnnbench.studies.cluster import run_on_ray

    return functools.partial(run_on_ray, address=args.address, cpus_per_run=args.cpus_per_run,
                             gpus_per_run=args.gpus_per_run, nproc=args.nproc)


def _run(args) -> int:
    if args.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {args.nproc}")
    study = _load(args)
    out = args.out or f"runs/{study.name}"
    runs = select_runs(study, args.only)
    _, total_text = _estimates(study, runs)  # checks options first
    execute = _executor(args)  # its flags checked
    if execute is None:  # the data of the runs to train here, before any of them starts
        from cnnbench.studies.runner import check_datasets

        check_datasets(study, runs, out)
    say = sys.stderr if args.json else sys.stdout  # with --json, stdout is the JSON alone
    print(f"study {study.name}: {len(study.runs)} runs, profile {study.profile} -> {out}; "
          f"{total_text}", file=say)
    from cnnbench.studies.runner import run_study, study_track, torchrun_train
    from cnnbench.training.tracking import parent_run

    files = None
    with stop_on_sigterm(), parent_run(study_track(study, args.only), f"study {study.name}",
                                       "study") as track_files:  # --set track=mlflow
        outcomes = run_study(study, out, only=args.only, argv=args.argv, progress=not args.quiet,
                             train_fn=torchrun_train(args.nproc) if args.nproc > 1 else None,
                             log=lambda line: print(line, file=say, flush=True),
                             execute=execute)
        if args.corruptions:
            _corrupt_finished(outcomes, lambda line: print(line, file=say, flush=True),
                              images=args.corruption_images)
        if args.latency:
            _time_finished(outcomes, lambda line: print(line, file=say, flush=True))
        if not args.no_report:
            from cnnbench.report import write_report

            files = write_report([out], out, figures=args.figures,
                                 run_figures=args.run_figures)
            print(f"report: {files.markdown}, {files.html}, {files.csv}, {files.reproduction_csv}",
                  file=say)
            track_files([files.markdown, files.html, files.csv, files.reproduction_csv])
    if args.json:
        print(json.dumps({
            "study": study.name, "profile": study.profile, "out": str(out),
            "runs": [{"name": o.run.name, "status": o.status, "run_dir": str(o.run_dir),
                      "message": o.message or None} for o in outcomes],
            "report": None if files is None else {
                "markdown": str(files.markdown), "html": str(files.html), "csv": str(files.csv),
                "reproduction_csv": str(files.reproduction_csv) if files.reproduction_csv else None}},
            indent=2))
    bad = [o for o in outcomes if o.status in ("failed", "skipped")]
    if bad:
        print(f"cnnbench: {len(bad)} of {len(outcomes)} runs did not finish: "
              + ", ".join(f"{o.run.name} ({o.status})" for o in bad)
              + "; see error.txt in their directories", file=sys.stderr)
        return 1
    return 0
