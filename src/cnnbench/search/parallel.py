"""A search's trials as Ray tasks, several at once (``cnnbench search --executor ray``).

Each trial trains as a Ray task (:func:`train_trial`) with the resources asked for; the task
opens the search's Optuna storage itself and reports its validation accuracy after every
epoch there, and asks the pruner there, so pruning works as in one process. The storage must
be one every task reaches: the default SQLite file in ``OUT`` on one machine or a shared
filesystem, PostgreSQL (``--storage``) for many machines. The driver asks Optuna for as many
trials at a time as the cluster holds (its CPUs over ``--cpus-per-run``, or its GPUs over
``--gpus-per-run``), the TPE sampler proposing each from the trials finished so far.
"""

from __future__ import annotations

from typing import Any


def train_trial(config, run_dir: str, resume: bool, argv, storage: str, study_name: str,
                trial_id: int, pruner: str, epochs: int) -> dict[str, Any]:
    """One trial's run (in a Ray worker): ``train_run`` with test=False, each epoch's
    validation accuracy reported to the trial in ``storage`` and the pruner asked there."""
    from cnnbench.search.backend import load_optuna, make_pruner
    from cnnbench.training import train_run

    optuna = load_optuna()
    study = optuna.load_study(study_name=study_name, storage=storage,
                              pruner=make_pruner(optuna, pruner))
    trial = optuna.trial.Trial(study, trial_id)

    def on_epoch(metrics: dict[str, Any]) -> bool:
        trial.report(metrics["val_acc"], metrics["epoch"])
        return metrics["epoch"] < epochs and trial.should_prune()

    return train_run(config, out_dir=run_dir, resume=resume, argv=argv, progress=False,
                     test=False, on_epoch=on_epoch)


class RayTrials:
    """Connects to (or starts) Ray and trains trials as its tasks."""

    def __init__(self, address: str | None = None, cpus_per_run: float = 1,
                 gpus_per_run: float = 0, log=print) -> None:
        from cnnbench.errors import UserError
        from cnnbench.extras import require
        from cnnbench.studies.cluster import keep_sigterm

        (self.ray,) = require("cluster")
        if cpus_per_run <= 0 or gpus_per_run < 0:
            raise UserError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got "
                            f"{cpus_per_run} and {gpus_per_run}")
        self.started_here = not self.ray.is_initialized()
        if self.started_here:
            if address:
                log(f"joining the Ray cluster at {address}: the trials' run directories and the "
                    f"storage must be reachable from every node")
            with keep_sigterm():
                self.ray.init(address=address, include_dashboard=False, log_to_driver=False,
                              configure_logging=False)
        resources = self.ray.cluster_resources()
        fit = [int(resources.get("CPU", 1) // cpus_per_run)]
        if gpus_per_run > 0:
            fit.append(int(resources.get("GPU", 0) // gpus_per_run))
        self.parallel = max(1, min(fit))
        self.task = self.ray.remote(train_trial).options(num_cpus=cpus_per_run,
                                                         num_gpus=gpus_per_run, max_retries=0)
        self.threads = max(1, int(cpus_per_run))
        self.running: set = set()

    def train(self, config, *args) -> dict[str, Any]:
        """Run :func:`train_trial` as a task and wait for its summary; Ctrl-C cancels it."""
        if config is not None and config.num_threads == 0:  # as many threads as it has CPUs
            config = config.replace(num_threads=self.threads)
        ref = self.task.remote(config, *args)
        self.running.add(ref)
        try:
            return self.ray.get(ref)
        except KeyboardInterrupt:
            self.ray.cancel(ref, force=True)
            raise
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, BaseException) else exc) from None
        finally:
            self.running.discard(ref)

    def cancel_all(self) -> None:
        """Cancel the trials' tasks still running (Ctrl-C)."""
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()
