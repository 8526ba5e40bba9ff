"""Runs tracked where users already look: TensorBoard's HParams view (every run,
:func:`write_hparams`; a study's or a search's list of options, :func:`write_hparams_experiment`)
and MLflow (``--track mlflow[:URI]``; the optional ``mlflow`` extra).

A run with ``track`` set is also one MLflow run: its recipe options as parameters, every
epoch's metrics (``train_loss``, ``val_acc``, ``lr``, ...) at the epoch's step, the final
figures of ``summary.json`` (``test_acc``, ``best_val_acc``, ``test_ece``, ...), and the run
directory's record files as artifacts (``summary.json``, ``config.yaml``, ``metrics.jsonl``,
``train.log``, ...; no checkpoints). A failed run ends ``FAILED``, an interrupted one
``KILLED``; resumed, it continues the same MLflow run (its id is kept in the run directory's
``mlflow.json``). A study or a search opens one parent run (:func:`parent_run`) and its runs
become its children, also when they train in other processes (the parent's id travels in
``$CNNBENCH_MLFLOW_PARENT``); the parent gets the report files as artifacts.

The tracking URI: ``mlflow:URI``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
in the current folder (MLflow 3 keeps its plain-directory store for old data only). The
experiment: ``$MLFLOW_EXPERIMENT_NAME``, else ``cnnbench``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MLflowTracker", "parent_run", "tracking_uri", "write_hparams", "write_hparams_experiment",
           "HPARAM_METRICS", "PARENT_ENV", "TRACKING_FILE"]

PARENT_ENV = "CNNBENCH_MLFLOW_PARENT"
TRACKING_FILE = "mlflow.json"
DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "cnnbench"
# the run directory's files logged as artifacts (not checkpoints: they are large and local)
ARTIFACTS = ("summary.json", "config.yaml", "metrics.jsonl", "train_steps.jsonl", "train.log",
             "test_predictions.json", "corruptions.json", "latency.json", "error.txt")


# the figures TensorBoard's HParams view shows beside each run's options
HPARAM_METRICS = ("test_acc", "best_val_acc", "test_loss", "test_ece", "train_time_s")


def write_hparams_experiment(folder: str | Path, options: dict[str, Any]) -> None:
    """Tell TensorBoard's HParams view which options matter for the runs under ``folder`` (a
    study's or a search's): ``options`` maps each (the ones that differ between the runs) to
    an example value, giving its type; the metrics are :data:`HPARAM_METRICS`. Without it
    TensorBoard shows every option of every run, alphabetically, and ticks the first five."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    shown = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in options.items()}
    experiment, _, _ = hparams(shown, {f"hparam/{k}": 0.0 for k in HPARAM_METRICS})
    with SummaryWriter(log_dir=str(folder)) as writer:
        writer.file_writer.add_summary(experiment)


def write_hparams(writer, options: dict[str, Any], summary: dict[str, Any], step: int) -> None:
    """A run's TensorBoard HParams record, through its ``writer``: its recipe ``options`` (the
    seed kept) and its final figures of ``summary`` (``hparam/test_acc``, ...), so
    TensorBoard's HParams view lines up a study's runs (the experiment's list of options:
    :func:`write_hparams_experiment`)."""
    from torch.utils.tensorboard.summary import hparams

    shown = {k: v if isinstance(v, (bool, int, float, str)) else
             ("none" if v is None else json.dumps(v, sort_keys=True, default=str))
             for k, v in options.items()}
    metrics = {f"hparam/{k}": float(summary[k]) for k in HPARAM_METRICS
               if isinstance(summary.get(k), (int, float))}
    _, start, end = hparams(shown, metrics)
    for record in (start, end):
        writer.file_writer.add_summary(record)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value, step)
    writer.flush()


def tracking_uri(track: str) -> str:
    """The MLflow tracking URI that ``track`` (``mlflow`` or ``mlflow:URI``) names."""
    if track.startswith("mlflow:"):
        return track.split(":", 1)[1]
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _client(uri: str):
    import logging

    from cnnbench.extras import require

    require("mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no table-creation chatter
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifact_location(uri: str) -> str | None:
    """Where a new experiment in the store ``uri`` keeps its artifacts: for an SQLite file, the
    ``mlruns`` folder beside it (MLflow's default is ``./mlruns`` in the current directory,
    wherever the database is); None (MLflow's default) for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()


def _experiment_id(client) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri))


def _params(options: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, (json.dumps(v, default=str) if not isinstance(v, str) else v)[:500])
            for k, v in options.items()]


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MLflowTracker:
    """One cnnbench run as one MLflow run (see the module docstring)."""

    def __init__(self, track: str, run_dir: Path, name: str, resume: bool):
        self.uri = tracking_uri(track)
        self.client = _client(self.uri)
        self.run_dir = Path(run_dir)
        saved = self.run_dir / TRACKING_FILE
        record = json.loads(saved.read_text()) if resume and saved.is_file() else {}
        if record.get("tracking_uri") == self.uri:  # resumed: the same MLflow run goes on
            self.run_id = record["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            parent = os.environ.get(PARENT_ENV)
            tags = {"mlflow.parentRunId": parent} if parent else {}
            run = self.client.create_run(_experiment_id(self.client), run_name=name,
                                         tags={**tags, "cnnbench.run_dir": str(self.run_dir)})
            self.run_id = run.info.run_id
            saved.write_text(json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}))

    def params(self, options: dict[str, Any]) -> None:
        """The run's options (once; a resumed run has them already)."""
        logged = self.client.get_run(self.run_id).data.params
        fresh = {k: v for k, v in options.items() if k not in logged}
        if fresh:
            self.client.log_batch(self.run_id, params=_params(fresh))

    def epoch(self, metrics: dict[str, Any], step: int) -> None:
        """One epoch's numeric metrics at optimizer step ``step`` (``epoch`` included)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, v, now, step) for k, v in _numbers(metrics).items()])

    def end(self, summary: dict[str, Any] | None, status: str = "FINISHED") -> None:
        """The final figures of ``summary``, the record files as artifacts, and the end."""
        import time

        from mlflow.entities import Metric

        if summary:
            now = int(time.time() * 1000)
            keys = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "test_ece",
                    "test_brier", "temperature", "train_time_s", "eval_time_s",
                    "train_images_per_s", "params", "macs", "epochs_completed")
            finals = _numbers({f"final/{k}": summary.get(k) for k in keys})
            self.client.log_batch(self.run_id, metrics=[
                Metric(k, v, now, 0) for k, v in finals.items()])
            self.client.set_tag(self.run_id, "cnnbench.status", str(summary.get("status")))
        for name in ARTIFACTS:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id, status=status)


@contextlib.contextmanager
def parent_run(track: str | None, name: str, kind: str) -> Iterator[Any]:
    """While inside, runs tracked with ``track`` are children of one MLflow run named
    ``name`` (a study's or a search's; ``kind`` is tagged). Yields a function that logs files
    (the report) as the parent's artifacts; with no ``track``, nothing is opened."""
    if track is None:  # TrainConfig reads "none" and "" as None
        yield lambda paths: None
        return
    client = _client(tracking_uri(track))
    run = client.create_run(_experiment_id(client), run_name=name, tags={"cnnbench.kind": kind})
    run_id = run.info.run_id
    before = os.environ.get(PARENT_ENV)
    os.environ[PARENT_ENV] = run_id

    def artifacts(paths) -> None:
        for path in paths:
            if path is not None and Path(path).is_file():
                client.log_artifact(run_id, str(path))

    status = "FAILED"
    try:
        yield artifacts
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if before is None:
            os.environ.pop(PARENT_ENV, None)
        else:
            os.environ[PARENT_ENV] = before
        client.set_terminated(run_id, status=status)
