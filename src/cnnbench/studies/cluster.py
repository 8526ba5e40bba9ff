"""A study's runs as Ray tasks (``cnnbench study run NAME --executor ray``; the optional
``cluster`` extra).

Each run that has to be trained becomes one Ray task asking for ``cpus_per_run`` CPUs and
``gpus_per_run`` GPUs (times ``nproc`` for a run trained in several processes, which the task
starts with torchrun), and as many run at once as the cluster holds. The driver plans every
run exactly as a local study does (:class:`cnnbench.studies.runner._Runner`: finished runs
skipped, interrupted ones resumed, failures recorded and the others going on) and writes the
same run directories: a task trains with :func:`cnnbench.training.train_run` into
``OUT/<run>/``, so ``OUT`` must be a folder every node can reach (a shared filesystem) when
the cluster has several machines. A run whose ``init`` names another run is planned once that
run has ended. Ctrl-C cancels the tasks still running and records them as interrupted.

Without an address a Ray instance is started on this machine for the study (and stopped
after it); ``address="auto"`` or ``"HOST:PORT"`` joins a running cluster (``ray start --head``
on one node, ``ray start --address HEAD:6379`` on the others).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cnnbench.studies.runner import Job, RunOutcome

__all__ = ["run_on_ray"]


def _train_task(config, run_dir: str, resume: bool, argv, nproc: int) -> dict[str, Any]:
    """What a Ray task runs: one run, in ``nproc`` processes when more than one."""
    if nproc > 1:
        from cnnbench.studies.runner import torchrun_train

        train = torchrun_train(nproc)
    else:
        from cnnbench.training import train_run as train
    return train(config, out_dir=run_dir, resume=resume, argv=argv, progress=False)


def run_on_ray(runner, runs: list, configs: dict, out: Path, *, address: str | None = None,
               cpus_per_run: float = 1, gpus_per_run: float = 0, nproc: int = 1) -> list[RunOutcome]:
    """Train ``runs`` (with their ``configs``) as Ray tasks; one outcome per run, in order."""
    from cnnbench.extras import require

    (ray,) = require("cluster")
    if cpus_per_run <= 0 or gpus_per_run < 0:
        from cnnbench.errors import UserError

        raise UserError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got "
                        f"{cpus_per_run} and {gpus_per_run}")
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            runner.log(f"joining the Ray cluster at {address}; every node writes its runs into "
                       f"{out}, which must be a folder all nodes share")
        with keep_sigterm():  # ray.init installs its own SIGTERM handler, and keeps it
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    task = ray.remote(_train_task).options(num_cpus=cpus_per_run * nproc,
                                           num_gpus=gpus_per_run * nproc, max_retries=0)
    names = {r.name for r in runs}
    pending = list(enumerate(runs, 1))
    running: dict[Any, Job] = {}
    outcomes: dict[str, RunOutcome] = {}
    try:
        while pending or running:
            for i, run in list(pending):
                if run.init in names and run.init not in runner.status:
                    continue  # its init run has not ended yet
                pending.remove((i, run))
                config = configs[run.name]
                if run.init is not None:
                    config = config.replace(init=str(out / run.init))  # its best.ckpt
                if config.num_threads is None:  # as many threads as the task has CPUs
                    config = config.replace(num_threads=max(1, int(cpus_per_run)))
                planned = runner.plan(run, config, f"[{i}/{len(runs)}] {run.name}")
                if isinstance(planned, RunOutcome):
                    outcomes[run.name] = runner.done(planned)
                    continue
                ref = task.remote(planned.config, str(planned.run_dir), planned.resume,
                                  runner.argv, nproc)
                running[ref] = planned
            if not running:
                continue
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ref)
            try:
                outcome = runner.conclude(job, ray.get(ref))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                outcome = runner.conclude(job, error=cause)
            outcomes[job.run.name] = runner.done(outcome)
    except KeyboardInterrupt as exc:
        for ref, job in running.items():
            ray.cancel(ref, force=True)
            runner.interrupted(job, exc)
        raise
    finally:
        if started_here:
            ray.shutdown()
    return [outcomes[r.name] for r in runs]


@contextlib.contextmanager
def keep_sigterm():
    """SIGTERM's handler as it was before the block (Ray's ``init`` replaces it for good, so a
    SIGTERM would no longer stop a study as Ctrl-C does: :func:`cnnbench.commands.stop_on_sigterm`)."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
