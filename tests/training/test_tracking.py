"""--track mlflow: one MLflow run per cnnbench run (options, per-epoch metrics, final figures,
record files), resumed runs continue theirs, and a search's or study's runs are children of
one parent run; read back with mlflow.search_runs from the local store."""

from __future__ import annotations

import importlib.util

import pytest

from cnnbench.config.resolve import resolve_config
from cnnbench.training import train_run
from cnnbench.training.rundir import read_jsonl
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401

# the `mlflow` extra, installed by ./test.sh; imported by the tests that use it (1.4 s: not in
# every pytest worker that only collects this file)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs the mlflow extra")


def runs_in(uri: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["cnnbench"], output_format="list")


def test_a_tracked_run_is_one_mlflow_run_with_its_options_metrics_and_files(tiny_folder, tmp_path,
                                                                           monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # MLflow's own default: ./mlruns, wherever you are
    out = tiny_folder.out / "tracked"
    summary = train_run(resolve_config(quick_options(tiny_folder, epochs=2, lr=2e-3,
                                                     track=f"mlflow:{uri}")),
                        out_dir=out, progress=False)
    (run,) = runs_in(uri)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert run.data.params["lr"] == "0.002" and run.data.params["model"] == "lenet5"
    assert "device" not in run.data.params and "track" not in run.data.params
    assert run.data.metrics["final/test_acc"] == pytest.approx(summary["test_acc"])
    history = mlflow.tracking.MlflowClient(uri).get_metric_history(run.info.run_id, "val_acc")
    epochs = read_jsonl(out / "metrics.jsonl")
    assert [m.value for m in history] == pytest.approx([e["val_acc"] for e in epochs])
    files = {a.path for a in mlflow.tracking.MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "metrics.jsonl", "train.log"} <= files
    assert not any(f.endswith(".ckpt") for f in files)
    # the artifacts are kept beside the database, not in the current directory
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert (tmp_path / "store" / "mlruns").is_dir()


def test_an_interrupted_run_is_killed_then_continued_in_the_same_mlflow_run(tiny_folder, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tiny_folder.out / "tracked"
    config = resolve_config(quick_options(tiny_folder, epochs=3, track=f"mlflow:{uri}"))

    def stop(metrics):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        train_run(config, out_dir=out, progress=False, on_epoch=stop)
    (run,) = runs_in(uri)
    assert run.info.status == "KILLED"
    train_run(config, out_dir=out, resume=True, progress=False)
    (again,) = runs_in(uri)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    history = mlflow.tracking.MlflowClient(uri).get_metric_history(run.info.run_id, "epoch")
    assert sorted(int(m.value) for m in history) == [1, 2, 3]


def test_a_searchs_trials_are_children_of_one_parent_run(tiny_folder, tmp_path):
    import mlflow

    from cnnbench.search import parse_space, run_search

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = quick_options(tiny_folder, epochs=1, track=f"mlflow:{uri}")
    run_search(options, parse_space({"lr": [1e-3, 3e-3]}), tiny_folder.out / "search",
               trials=2, pruner="none", log=lambda line: None)
    runs = runs_in(uri)
    (parent,) = [r for r in runs if r.data.tags.get("cnnbench.kind") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3 and parent.info.status == "FINISHED"
    files = {a.path for a in mlflow.tracking.MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"search.md", "search.json", "best.yaml"} <= files


def test_an_unknown_tracker_is_one_line():
    from cnnbench.errors import UserError

    with pytest.raises(UserError, match="give --track mlflow or --track mlflow:URI"):
        resolve_config({"track": "wandb"})
