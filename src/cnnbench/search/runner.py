"""A hyper-parameter search with Optuna (:func:`run_search`; ``cnnbench search``).

Each trial is a normal run directory, ``OUT/trial-NNN/``, trained with the base options and
the values Optuna's TPE sampler proposes from the space (:mod:`cnnbench.search.space`). A
trial reports its validation accuracy after every epoch; the pruner (median, successive
halving, or none) may stop it there (status ``pruned``). Trials never touch the test set
(:func:`cnnbench.training.train_run` with ``test=False``): the objective is the trial's best
validation accuracy. When the trials are done, the best one, and only it, is tested once (its
run resumed into its test), and its config is written as ``OUT/best.yaml``, which
``cnnbench train --config OUT/best.yaml`` trains.

The first trial is the base options themselves (the searched options at their default or
given values, when the space holds them), so the search says how much it gained over not
searching, on the same budget.

Storage: an Optuna database, ``sqlite:///OUT/search.db`` by default (any Optuna storage URL,
e.g. PostgreSQL for several machines, with ``storage``). Running the same search again
continues it: finished trials are kept, a trial that was interrupted resumes from its last
completed epoch, and trials are added until ``trials`` of them have finished (completed or
pruned). ``OUT/search.json`` records every trial and the timings; ``OUT/search.md`` is the
report (:mod:`cnnbench.search.report`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.errors import UserError
from cnnbench.search.backend import PRUNERS, load_optuna, make_pruner
from cnnbench.search.space import Param

__all__ = ["run_search", "PRUNERS", "SEARCH_FILE", "BEST_FILE"]

SEARCH_FILE, BEST_FILE, DATABASE = "search.json", "best.yaml", "search.db"


def _baseline(space: tuple[Param, ...], config) -> dict[str, Any] | None:
    """The base config's values of the searched options, if every one lies in the space."""
    values = {p.name: getattr(config, p.name) for p in space}
    for p in space:
        v = values[p.name]
        if p.kind == "categorical" and v not in p.choices:
            return None
        if p.kind != "categorical" and (not isinstance(v, (int, float)) or not p.low <= v <= p.high):
            return None
    return values


def _interrupted(study, optuna) -> list:
    """Trials cut short by an interruption (still RUNNING in the storage, or failed on
    Ctrl-C) whose run can continue and that no later trial has taken over."""
    taken = {t.user_attrs.get("resume_from") for t in study.get_trials(deepcopy=False)}
    out = []
    for t in study.get_trials(deepcopy=False,
                              states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL)):
        run_dir = t.user_attrs.get("run_dir")
        stale = t.state == optuna.trial.TrialState.RUNNING or t.user_attrs.get("interrupted")
        if stale and run_dir and run_dir not in taken and (Path(run_dir) / "last.ckpt").exists():
            out.append(t)
    return out


def run_search(base: dict[str, Any], space: tuple[Param, ...], out: str | Path, *,
               trials: int = 20, config_file: str | None = None, storage: str | None = None,
               pruner: str = "median", sampler_seed: int = 0, study_name: str = "search",
               progress: bool = False, argv: list[str] | None = None,
               log: Callable[[str], None] = print,
               train_fn: Callable[..., dict] | None = None, executor: str = "local",
               address: str | None = None, cpus_per_run: float = 1,
               gpus_per_run: float = 0) -> dict[str, Any]:
    """Search ``space`` around the ``base`` options (as :func:`cnnbench.config.resolve.resolve_config`
    takes them, over ``config_file``) with ``trials`` finished trials into ``out``; returns
    what ``OUT/search.json`` holds (see the module docstring). ``executor="ray"``: the trials
    as Ray tasks, as many at once as the cluster holds (:mod:`cnnbench.search.parallel`)."""
    from cnnbench.config import dump_yaml
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training.rundir import read_json, saved_config

    optuna = load_optuna()
    if trials < 1:
        raise UserError(f"--trials must be >= 1, got {trials}")
    if executor not in ("local", "ray"):
        raise UserError(f"unknown executor {executor!r}; choose local or ray")
    if train_fn is None:
        from cnnbench.training import train_run as train_fn
    out = Path(out)
    base = {k: v for k, v in base.items() if k != "out"}
    base_config = resolve_config(base, config_file=config_file)
    if base_config.val_split <= 0:
        raise UserError("a search chooses on the validation split, never the test set: give "
                        "--val-split > 0 (e.g. 0.1)")
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / DATABASE).resolve()}"
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed), pruner=make_pruner(optuna, pruner))
    definition = {"space": [p.describe() for p in space],
                  "base": json.loads(json.dumps(base_config.to_dict(), default=str))}
    if study.user_attrs.get("definition") not in (None, definition):
        raise UserError(f"{out} holds a search with another space or other base options (in "
                        f"{storage}); give another --out (or --study-name)")
    study.set_user_attr("definition", definition)

    def finished() -> list:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return study.get_trials(deepcopy=False, states=states)

    if not study.get_trials(deepcopy=False):
        baseline = _baseline(space, base_config)
        if baseline is not None:
            study.enqueue_trial(baseline, user_attrs={"baseline": True})
        else:
            log("the base options' values of the searched options are not all in the space: "
                "no trial of the base options to compare with")
    for stale in _interrupted(study, optuna):
        if stale.state == optuna.trial.TrialState.RUNNING:
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(stale.params, user_attrs={"resume_from": stale.user_attrs["run_dir"],
                                                      **({"baseline": True} if stale.user_attrs.get("baseline") else {})})
        log(f"trial {stale.number} was interrupted: it continues from its last completed epoch")

    timing: dict[str, float] = {}

    def objective(trial) -> float:
        started = time.perf_counter()
        params = {p.name: p.suggest(trial) for p in space}
        resume_from = trial.user_attrs.get("resume_from")
        run_dir = Path(resume_from) if resume_from else out / f"trial-{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
        config = resolve_config({**base, **params}, config_file=config_file)

        def on_epoch(metrics: dict[str, Any]) -> bool:
            trial.report(metrics["val_acc"], metrics["epoch"])
            # a trial that has trained every epoch is finished, not pruned
            return metrics["epoch"] < config.epochs and trial.should_prune()

        if resume_from:  # the epochs it had done count for the pruner as before
            from cnnbench.training.rundir import METRICS, read_jsonl

            for m in read_jsonl(run_dir / METRICS):
                trial.report(m["val_acc"], m["epoch"])
        try:
            if tasks is not None:  # a Ray task, which reports its epochs to the storage
                summary = tasks.train(None if resume_from else config, str(run_dir),
                                      bool(resume_from), argv, storage, study_name,
                                      trial._trial_id, pruner, config.epochs)
            else:
                summary = train_fn(None if resume_from else config, out_dir=run_dir,
                                   resume=bool(resume_from), argv=argv, progress=progress,
                                   test=False, on_epoch=on_epoch)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            timing["objective_s"] = time.perf_counter() - started
        trial.set_user_attr("train_time_s", summary.get("train_time_s"))
        trial.set_user_attr("epochs", summary.get("epochs_completed"))
        if summary.get("status") == "pruned":
            raise optuna.TrialPruned()
        return float(summary["best_val_acc"])

    from cnnbench.training.tracking import parent_run

    tasks = None
    if executor == "ray":
        from cnnbench.search.parallel import RayTrials

        tasks = RayTrials(address, cpus_per_run, gpus_per_run, log=log)
        log(f"Ray: {tasks.parallel} trials at a time")
    try:
        with parent_run(base_config.track, f"search {study_name}", "search") as track_files:
            search_start = time.perf_counter()
            overheads = []
            failures = 0
            while len(finished()) < trials:
                number = len(study.get_trials(deepcopy=False))
                batch = min(tasks.parallel, trials - len(finished())) if tasks else 1
                call = time.perf_counter()
                timing.clear()
                try:
                    if tasks is None:
                        study.optimize(objective, n_trials=1, catch=(Exception,))
                    else:
                        _optimize_together(study, objective, batch, optuna, tasks)
                except KeyboardInterrupt as exc:
                    again = (" ".join(argv) if argv else "the same command")
                    exc.args = (f"search interrupted in trial {number}; {again} continues it (finished "
                                f"trials are kept, this one resumes)",)
                    raise
                if "objective_s" in timing and batch == 1:
                    overheads.append(time.perf_counter() - call - timing["objective_s"])
                for trial in study.get_trials(deepcopy=False)[number:]:
                    failures += trial.state == optuna.trial.TrialState.FAIL
                    log(_trial_line(study, trial, len(finished()), trials, optuna))
                if failures >= max(3, trials):
                    raise UserError(f"{failures} trials failed (see their run directories' error.txt); "
                                    f"the search stops")

            complete = [t for t in finished() if t.state == optuna.trial.TrialState.COMPLETE]
            if not complete:
                raise UserError("every trial was pruned or failed: nothing to choose from; widen the "
                                "space or use --pruner none")
            best = study.best_trial
            best_dir = Path(best.user_attrs["run_dir"])
            log(f"best: trial {best.number} (validation accuracy {100 * best.value:.2f}%): testing it, once")
            tested = train_fn(None, out_dir=best_dir, resume=True, argv=argv, progress=progress)
            best_config = saved_config(best_dir).replace(out=None)
            header = (f"# cnnbench search: the best of {len(finished())} trials in {out} (trial "
                      f"{best.number}, validation accuracy {100 * best.value:.2f}%; chosen on validation "
                      f"only).\n# Train it: cnnbench train --config {out / BEST_FILE}\n")
            (out / BEST_FILE).write_text(header + dump_yaml(best_config))

            result = {
                "study_name": study_name, "storage": storage, "sampler": f"TPE (seed {sampler_seed})",
                "pruner": pruner, "trials_asked": trials, "objective": "best validation accuracy",
                **definition,
                "best": {"trial": best.number, "val_acc": best.value, "params": best.params,
                         "run_dir": str(best_dir), "test_acc": tested.get("test_acc"),
                         "tested_weights": tested.get("tested_weights")},
                "baseline": next(({"trial": t.number, "val_acc": t.value, "params": t.params}
                                  for t in complete if t.user_attrs.get("baseline")), None),
                "trials": [_trial_record(t, optuna, read_json) for t in study.get_trials(deepcopy=False)],
                "search_time_s": time.perf_counter() - search_start,
                "overhead_per_trial_s": (sum(overheads) / len(overheads)) if overheads else None,
            }
            (out / SEARCH_FILE).write_text(json.dumps(result, indent=2, default=str))
            from cnnbench.training.tracking import write_hparams_experiment

            write_hparams_experiment(out, best.params)  # TensorBoard's HParams: the searched options
            from cnnbench.search.report import write_search_report

            write_search_report(out, result, study)
            track_files([out / "search.md", out / SEARCH_FILE, out / BEST_FILE])
            return result
    finally:
        if tasks is not None:
            tasks.close()


def _optimize_together(study, objective, n: int, optuna, tasks) -> None:
    """``n`` trials at once: asked one after another (two asks at once of an SQLite storage can
    both take the same enqueued trial), each then trained in a thread of its own (which waits
    on its Ray task) and told as Optuna's ``optimize`` would. Ctrl-C cancels the tasks; their
    trials stay RUNNING in the storage, and the next run of the search resumes them."""
    from concurrent.futures import ThreadPoolExecutor

    asked = [study.ask() for _ in range(n)]
    pool = ThreadPoolExecutor(max_workers=n)
    try:
        futures = [(pool.submit(objective, trial), trial) for trial in asked]
        for future, trial in futures:
            try:
                study.tell(trial, future.result())
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            except Exception as exc:  # noqa: BLE001 - recorded, as optimize(catch=...) does
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except KeyboardInterrupt:
        tasks.cancel_all()
        raise
    finally:
        pool.shutdown(wait=True)


def _trial_record(t, optuna, read_json) -> dict[str, Any]:
    run_dir = t.user_attrs.get("run_dir")
    summary = read_json(Path(run_dir) / "summary.json") if run_dir else {}
    return {"number": t.number, "state": t.state.name.lower(), "params": t.params,
            "val_acc": t.value, "epochs": t.user_attrs.get("epochs"),
            "val_acc_by_epoch": {int(k): v for k, v in sorted(t.intermediate_values.items())},
            "train_time_s": t.user_attrs.get("train_time_s"), "run_dir": run_dir,
            "baseline": bool(t.user_attrs.get("baseline")),
            "resumed_from": t.user_attrs.get("resume_from"),
            "status": summary.get("status"),
            "duration_s": t.duration.total_seconds() if t.duration is not None else None}


def _trial_line(study, t, done: int, trials: int, optuna) -> str:
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in t.params.items())
    head = f"[{done}/{trials}] trial {t.number}" + (" (base options)" if t.user_attrs.get("baseline") else "")
    state = t.state
    if state == optuna.trial.TrialState.COMPLETE:
        best = study.best_trial
        what = (f"validation accuracy {100 * t.value:.2f}% (best {100 * best.value:.2f}%, "
                f"trial {best.number})")
    elif state == optuna.trial.TrialState.PRUNED:
        last = max(t.intermediate_values) if t.intermediate_values else 0
        what = f"pruned after epoch {last}"
    else:
        what = f"FAILED (see {t.user_attrs.get('run_dir', '?')}/error.txt)"
    return f"{head}: {params} -> {what}"
