"""`cnnbench study run --executor ray`: a study's runs as Ray tasks on a local Ray instance give
the summaries a local study gives, skip finished runs, wait for their init run, and survive a
failing run."""

from __future__ import annotations

import functools

import pytest

from cnnbench.studies import load_study, run_study
from cnnbench.training.rundir import read_summary
from engine_fixtures import _tiny_folder_files, tiny_folder  # noqa: F401
from study_fixtures import write_study

ray = pytest.importorskip("ray")  # the `cluster` extra, installed by ./test.sh

SAME = ("status", "test_acc", "test_loss", "best_val_acc", "best_epoch", "confusion_matrix",
        "params", "epochs_completed", "init")


def spec(dataset: str) -> dict:
    return {"name": "tiny-ray", "description": "four tiny runs", "report": "none",
            "defaults": {"model": "lenet5", "dataset": dataset, "epochs": 2, "batch_size": 16,
                         "lr": 3e-3, "val_split": 0.25, "device": "cpu", "deterministic": True,
                         "num_threads": 1, "recipe": "none", "log_every": 5},
            "runs": [{"name": "a", "step": "baseline"},
                     {"name": "b", "step": "+ lr", "lr": 1e-2},
                     {"name": "c", "init": "a", "step": "+ from a", "epochs": 1},
                     {"name": "bad", "step": "no such device here", "device": "cuda"}]}


@pytest.mark.slow  # a Ray instance: started first
def test_a_study_on_ray_equals_the_local_one(tiny_folder, tmp_path):
    import signal

    from cnnbench.studies.cluster import keep_sigterm, run_on_ray

    study = load_study(write_study(tmp_path, spec(tiny_folder.dataset)), profile="full")
    local = run_study(study, tmp_path / "local", log=lambda line: None)
    lines = []
    before = signal.getsignal(signal.SIGTERM)
    with keep_sigterm():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    assert signal.getsignal(signal.SIGTERM) is before  # Ray's handler gone again
    try:
        execute = functools.partial(run_on_ray)
        on_ray = run_study(study, tmp_path / "ray", execute=execute, log=lines.append)
        again = run_study(study, tmp_path / "ray", execute=execute, log=lambda line: None)
    finally:
        ray.shutdown()
    assert [o.status for o in local] == [o.status for o in on_ray] == [
        "finished", "finished", "finished", "failed"]
    for outcome in on_ray:
        mine, theirs = read_summary(outcome.run_dir), read_summary(tmp_path / "local" / outcome.run.name)
        assert {k: mine.get(k) for k in SAME if k != "init"} == {k: theirs.get(k) for k in SAME if k != "init"}
    assert (tmp_path / "ray" / "bad" / "error.txt").exists()
    assert any("bad: FAILED" in line for line in lines)
    # c started from a's weights, on Ray as here: it waited for a
    assert read_summary(tmp_path / "ray" / "c")["init"].startswith(str(tmp_path / "ray" / "a"))
    # run again: the finished runs are skipped, the failed one tried again (and fails again)
    assert [o.status for o in again] == ["done-before", "done-before", "done-before", "failed"]


def test_ray_options_without_ray_are_one_line(tmp_path, capsys):
    from cnnbench.cli import main

    assert main(["study", "run", "mnist-five", "--profile", "quick", "--address", "auto",
                 "--out", str(tmp_path)]) == 2
    assert "--address apply to --executor ray" in capsys.readouterr().err
