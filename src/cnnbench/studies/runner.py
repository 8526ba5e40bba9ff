"""Running a study: its runs in order into ``OUT/<run>/`` (:func:`run_study`).

Each run directory is a normal run directory (:mod:`cnnbench.training.rundir`) plus
``study.json`` (:meth:`StudyRun.meta`); ``OUT/study.yaml`` records the study as resolved for
the invocation. A run that fails or is interrupted gets ``error.txt``, ending in the command
that continues the study (running it again: finished runs are skipped, an interrupted run
resumes from its ``last.ckpt``), and a ``failed`` summary; a run whose ``init`` run did not
finish, a ``skipped`` one. :func:`torchrun_train` trains each run in several processes
(``cnnbench study run --nproc N``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from cnnbench.errors import UserError
from cnnbench.studies.spec import STUDY_DIR, Study, StudyRun, build_config, select_runs
from cnnbench.config import dump_yaml
from cnnbench.training.rundir import (BEST, CONFIG, ERROR, LAST, STUDY, SUMMARY, config_changes,
                                      now, prepare_run_dir, read_json, read_summary, run_state,
                                      write_json)

# A finished run of a smaller profile is trained again when a bigger one is asked for; a run
# of the same or a bigger profile is kept (a quick re-run never replaces a full run).
_PROFILE_RANK = {"quick": 0, "cpu": 1, "full": 2}

TrainFn = Callable[..., dict]


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: ``finished``, ``failed``, ``skipped`` or ``done-before``."""

    run: StudyRun
    status: str
    run_dir: Path
    message: str = ""


def run_study(study: Study, out_dir: str | Path, *, train_fn: TrainFn | None = None,
              only: list[str] | None = None, argv: list[str] | None = None,
              progress: bool = True, log: Callable[[str], None] = print,
              execute: Callable[..., list[RunOutcome]] | None = None) -> list[RunOutcome]:
    """Train the study's runs into ``out_dir/<run>/``; return one outcome per run.

    ``train_fn(config, out_dir=, resume=, argv=, progress=) -> summary`` defaults to
    :func:`cnnbench.training.train_run`; tests pass a stub. Every run's config is built (and so
    validated) before the first run starts. ``argv``, the command line, is recorded in each
    run's summary and is the command ``error.txt`` gives to continue the study. ``execute(runner,
    runs, configs, out)`` trains them elsewhere (:func:`cnnbench.studies.cluster.run_on_ray`);
    by default one after another here. A run whose data is missing fails like any other run;
    :func:`check_datasets` says it once, before any run (``cnnbench study run`` calls it).
    """
    if train_fn is None:
        from cnnbench.training import train_run as train_fn
    out = Path(out_dir)
    runs = select_runs(study, only)
    configs = {r.name: build_config(r.options, study.where(r)) for r in runs}
    out.mkdir(parents=True, exist_ok=True)
    _write_study_record(study, out, runs)

    runner = _Runner(study, out, train_fn, argv, progress, log)
    if execute is not None:
        outcomes = execute(runner, runs, configs, out)
    else:
        outcomes = []
        for i, run in enumerate(runs, 1):
            config = configs[run.name]
            if run.init is not None:
                config = config.replace(init=str(out / run.init))  # its best.ckpt
            outcomes.append(runner.run(run, config, f"[{i}/{len(runs)}] {run.name}"))
    _hparams_experiment(out, list(configs.values()))
    return outcomes


def _hparams_experiment(out: Path, configs: list) -> None:
    """TensorBoard's HParams view of the study (``tensorboard --logdir OUT``): the options that
    differ between its runs (the seed too, when it does)."""
    from cnnbench.config import NOT_RECIPE

    rows = [c.to_dict() for c in configs]
    varying = {k: rows[0][k] for k in rows[0]
               if (k not in NOT_RECIPE or k == "seed") and len({repr(r[k]) for r in rows}) > 1}
    if varying:
        from cnnbench.training.tracking import write_hparams_experiment

        write_hparams_experiment(out, varying)


def study_track(study: Study, only: list[str] | None = None) -> str | None:
    """Where the study's runs are tracked besides their directories (their ``track``
    option, e.g. ``--set track=mlflow``): the first of its runs' that names one."""
    for run in select_runs(study, only):
        track = build_config(run.options, study.where(run)).track
        if track is not None:  # TrainConfig reads "none" as None
            return track
    return None


def torchrun_train(nproc: int) -> TrainFn:
    """A ``train_fn`` for :func:`run_study` that trains each run in ``nproc`` processes on this
    machine: ``cnnbench train --config RUN/config.yaml --out RUN`` (``--resume RUN`` to continue)
    under ``python -m torch.distributed.run --standalone --nproc_per_node=N``. The processes'
    output passes through; a failure raises :class:`UserError` with the run's one error line."""

    def train(config, out_dir, resume=False, argv=None, progress=True) -> dict:
        from cnnbench.training.distributed import torchrun_command

        run_dir = Path(out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:  # the saved config, with this invocation's resumable changes (device, ...)
            config, _ = prepare_run_dir(config, run_dir, resume=True)
            args = ["train", "--resume", str(run_dir)]
        else:
            args = ["train", "--config", str(run_dir / CONFIG), "--out", str(run_dir)]
        (run_dir / CONFIG).write_text(dump_yaml(config))
        errors = []
        with subprocess.Popen(torchrun_command(nproc, [*args, *([] if progress else ["--quiet"])]),
                              stderr=subprocess.PIPE, text=True, errors="replace") as proc:
            try:
                for line in proc.stderr:
                    sys.stderr.write(line)
                    if line.startswith("cnnbench: error: "):
                        errors.append(line.removeprefix("cnnbench: error: ").strip())
            except BaseException:  # Ctrl-C, or a SIGTERM only this process got: the job ends too
                _stop(proc)
                raise
        if proc.returncode != 0:
            raise UserError(errors[0] if errors else f"torchrun ended with status "
                            f"{proc.returncode} ({nproc} processes)")
        return read_summary(run_dir) or {}

    return train


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """End a torchrun job: SIGTERM (torchrun passes it to its processes), SIGKILL after
    ``grace_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class Job:
    """A run to train: its config, directory, whether it resumes, and its log prefix."""

    run: StudyRun
    config: object
    run_dir: Path
    resume: bool
    head: str


@dataclass
class _Runner:
    """One invocation of :func:`run_study`: trains one run at a time."""

    study: Study
    out: Path
    train_fn: TrainFn
    argv: list[str] | None
    progress: bool
    log: Callable[[str], None]
    status: dict[str, str] = field(default_factory=dict)  # run name -> how it ended

    def run(self, run: StudyRun, config, head: str) -> RunOutcome:
        """Train ``run`` with ``config`` (or skip it); ``head`` starts every log line."""
        planned = self.plan(run, config, head)
        return self.done(planned if isinstance(planned, RunOutcome) else self.train(planned))

    def done(self, outcome: RunOutcome) -> RunOutcome:
        """Note how a run ended (the runs that start from it look it up)."""
        self.status[outcome.run.name] = ("finished" if outcome.status == "done-before"
                                         else outcome.status)
        return outcome

    def plan(self, run: StudyRun, config, head: str) -> "RunOutcome | Job":
        """What to do with ``run``: an outcome when it is not trained (finished before, or
        its ``init`` run did not finish), else the :class:`Job` that trains it."""
        run_dir = self.out / run.name
        state, summary = run_state(run_dir)
        changed = config_changes(run_dir, config, ignore=("init",))  # init: a path to its run
        if state == "finished":
            profile = _finished_profile(run_dir, summary)
            if _covers(profile, self.study.profile):
                note = (f"; its recipe differs from the study's now ({', '.join(changed)}): delete "
                        f"{run_dir} to train it again" if changed else "")
                if profile == self.study.profile:
                    # the study file's notes, references, choices and the report's recipe
                    # reach the run's record without training it again; `options` stays what
                    # the run trained with, so a recipe changed since shows as a departure
                    meta, old = run.meta(self.study), read_json(run_dir / STUDY)
                    meta.update({k: old[k] for k in ("options", "init") if k in old})
                    write_json(run_dir / STUDY, meta)
                    note += "; its study.json refreshed from the study file"
                self.log(f"{head}: finished before (profile {profile}), skipped{note}")
                return RunOutcome(run, "done-before", run_dir)
            if run.init is not None and self.status.get(run.init) != "finished":
                message = (f"kept its {profile} run: the run it starts from ({run.init}) did not "
                           f"finish in the {self.study.profile} profile")
                self.log(f"{head}: {message}")
                return RunOutcome(run, "skipped", run_dir, message)
            # a smaller profile's run never stands in for a bigger one: train it again
            self.log(f"{head}: finished before in the smaller {profile} profile; training it in "
                     f"the {self.study.profile} profile, which replaces it")
            shutil.rmtree(run_dir)
            state = "fresh"
        _clear_failure(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / STUDY, run.meta(self.study))
        if run.init is not None and self.status.get(run.init) != "finished":
            message = f"not run: the run it starts from ({run.init}) did not finish"
            write_json(run_dir / SUMMARY, _stub_summary(run, self.study, "skipped", message))
            self.log(f"{head}: {message}")
            return RunOutcome(run, "skipped", run_dir, message)
        resume = state == "interrupted"
        if resume and changed:
            self.log(f"{head}: the recipe changed since the interrupted attempt "
                     f"({', '.join(changed)}); starting over")
            for name in (LAST, BEST):
                (run_dir / name).unlink(missing_ok=True)
            resume = False
        self.log(f"{head}: training{' (resuming)' if resume else ''} -> {run_dir}")
        return Job(run, config, run_dir, resume, head)

    def train(self, job: "Job") -> RunOutcome:
        """Train a planned run here, in this process (or under torchrun: ``train_fn``)."""
        try:
            summary = self.train_fn(job.config, out_dir=job.run_dir, resume=job.resume,
                                    argv=self.argv, progress=self.progress)
        except KeyboardInterrupt as exc:
            self.interrupted(job, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the study
            return self.conclude(job, error=exc)
        return self.conclude(job, summary)

    def interrupted(self, job: "Job", exc: KeyboardInterrupt) -> None:
        """Record an interrupted run; ``exc`` says how the study continues."""
        _record_failure(job.run_dir, job.run, self.study, exc, self.again())
        from cnnbench.training.record import interrupt_cause

        exc.args = (f"{interrupt_cause(exc)} in run {job.run.name}; `{self.again()}` continues "
                    f"the study (runs that finished are skipped, this one resumes)",)

    def conclude(self, job: "Job", summary: dict | None = None,
                 error: BaseException | None = None) -> RunOutcome:
        """The outcome of a trained run: its summary, or the error it failed with."""
        if error is not None:
            message = _one_line(error)
            _record_failure(job.run_dir, job.run, self.study, error, self.again())
            self.log(f"{job.head}: FAILED: {message} (see {job.run_dir / ERROR})")
            return RunOutcome(job.run, "failed", job.run_dir, message)
        state = (summary or {}).get("status", "finished")
        acc = (summary or {}).get("test_acc")
        self.log(f"{job.head}: {state}"
                 + (f", test accuracy {100 * acc:.2f}%" if acc is not None else ""))
        return RunOutcome(job.run, state, job.run_dir)

    def again(self) -> str:
        """The command that continues the study: this invocation's, else one built for it."""
        if self.argv:
            return shlex.join(self.argv)
        source = self.study.source
        name = source.stem if source.resolve().parent == STUDY_DIR.resolve() else str(source)
        seeds = ["--seeds", str(self.study.seeds)] if self.study.seeds > 1 else []
        return shlex.join(["cnnbench", "study", "run", name, "--out", str(self.out),
                           "--profile", self.study.profile, *seeds])


def _finished_profile(run_dir: Path, summary: dict) -> str | None:
    """The profile a finished run was trained in: its summary's, else its study.json's."""
    return summary.get("profile") or read_json(run_dir / STUDY).get("profile")


def _covers(profile: str | None, wanted: str) -> bool:
    """Whether a run finished in ``profile`` stands for one of profile ``wanted`` (the same or a
    bigger profile; an unknown one counts as full)."""
    return _PROFILE_RANK.get(profile, 2) >= _PROFILE_RANK.get(wanted, 2)


def check_datasets(study: Study, runs: list[StudyRun], out: str | Path | None = None) -> None:
    """Refuse to start when the data of a run that will train here is neither found nor
    downloadable: one line for the study, instead of the same failure in every run. Runs that
    finished in ``out`` in the study's profile (or a bigger one) are not trained again and need
    none; without ``out``, every run is checked. ``cnnbench study run`` asks before it starts;
    :func:`run_study` does not (nor on a cluster, whose nodes may hold data this machine has
    not)."""
    from cnnbench.data.datasets import require_dataset
    from cnnbench.data.errors import DatasetMissingError

    def trains(run: StudyRun) -> bool:
        if out is None:
            return True
        state, summary = run_state(Path(out) / run.name)
        return state != "finished" or not _covers(
            _finished_profile(Path(out) / run.name, summary), study.profile)

    needed = []  # (dataset, data_dir) pairs, in the runs' order
    for run in runs:
        if trains(run):
            config = build_config(run.options, study.where(run))
            if (config.dataset, config.data_dir) not in needed:
                needed.append((config.dataset, config.data_dir))
    for dataset, data_dir in needed:
        try:
            require_dataset(dataset, data_dir)
        except DatasetMissingError as exc:
            raise DatasetMissingError(f"study {study.name} cannot start: {exc}") from None


# --------------------------------------------------------------------------- failure records

def _stub_summary(run: StudyRun, study: Study, status: str, error: str) -> dict:
    """A summary for a run that did not produce its own: enough for the report's row."""
    opts = run.options
    return {"name": run.name, "model": opts.get("model"), "dataset": opts.get("dataset"),
            "seed": opts.get("seed"), "epochs": opts.get("epochs"), "profile": study.profile,
            "status": status, "error": error, "finished_at": now()}


def _record_failure(run_dir: Path, run: StudyRun, study: Study, exc: BaseException,
                    again: str) -> None:
    """``error.txt`` (the trainer's, if it wrote one) ending in how the study continues, and
    a ``failed`` summary. An interrupted run's note replaces the trainer's, which says
    ``--resume``: a study continues by running it again."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    message = "interrupted (KeyboardInterrupt)" if interrupted else _one_line(exc)
    error = run_dir / ERROR
    if interrupted or (isinstance(exc, UserError) and not error.exists()):
        text = message
    elif error.exists():
        text = error.read_text()
    else:
        text = "".join(traceback.format_exception(exc))
    then = ("resumes from its last checkpoint" if run_state(run_dir)[0] == "interrupted"
            else "starts again")
    error.write_text(f"{text.rstrip()}\n\nThis run belongs to study {study.name}. To continue "
                     f"the study, run `{again}` again: runs that finished are skipped, this one "
                     f"{then}.\n")
    summary = read_summary(run_dir)
    if summary is None or summary.get("status") != "failed":
        summary = {**(summary or {}), **_stub_summary(run, study, "failed", message)}
    elif interrupted:
        summary = {**summary, "error": message}
    write_json(run_dir / SUMMARY, summary)


def _clear_failure(run_dir: Path) -> None:
    """Forget a previous failed or skipped attempt before trying the run again."""
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") != "finished":
        (run_dir / SUMMARY).unlink()
        (run_dir / ERROR).unlink(missing_ok=True)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, UserError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_study_record(study: Study, out: Path, runs: list[StudyRun]) -> None:
    """``out/study.yaml``: the study as resolved for this invocation, for the record."""
    record = {"study": study.name, "source": str(study.source), "profile": study.profile,
              "seeds": study.seeds, "written_at": now(),
              "runs": [{"name": r.name, "init": r.init, "options": r.options} for r in runs]}
    (out / "study.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
