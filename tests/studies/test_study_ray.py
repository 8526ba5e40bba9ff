"""cnnbench on a Ray cluster (a head started with `ray start --head`, joined with `--address`,
as on a real cluster): `cnnbench study run --executor ray` gives the summaries a local study
gives, skips finished runs, waits for their init run and survives a failing run; `cnnbench
search --executor ray` on the same cluster trains two trials at a time, each reporting its
epochs to the search's storage itself (cnnbench.search.parallel). One test, one cluster:
starting one takes about 6 s of these 2 cores."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnbench.studies import load_study, run_study
from cnnbench.training.rundir import read_json, read_jsonl, read_summary
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A one-node Ray cluster of 2 CPUs, started as on a cluster's head node (`ray start --head`;
    --block keeps it in this process's hands: terminated, it stops the processes it started,
    and no other Ray instance of the machine). Ray's token authentication off: the driver
    joins over 127.0.0.1 without the token file."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="cnnbench-ray-"))  # short: Ray's sockets live in it
    # no workers started ahead of the tasks: each driver (the study, its second run, the
    # search) is a job of its own, whose prestarted workers cannot serve the next one
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_prestart_worker_first_driver": "0", "RAY_enable_worker_prestart": "0"}
    ray_cli = Path(sys.executable).with_name("ray")
    # its output to a file: a pipe stays open as long as the daemons it starts run, so reading
    # it to say why the head did not come up would wait for ever
    said = temp / "ray-start.txt"
    with said.open("w") as output:
        head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}",
                                 "--node-ip-address=127.0.0.1", "--num-cpus=2",
                                 "--include-dashboard=false", "--disable-usage-stats",
                                 # cnnbench's drivers read no worker output (log_to_driver off)
                                 "--include-log-monitor=false",
                                 f"--temp-dir={temp}"],
                                env=env, stdout=output, stderr=subprocess.STDOUT)
    old = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        deadline = time.monotonic() + 120
        while not list(temp.glob("session_*/logs/raylet.out")):
            assert head.poll() is None and time.monotonic() < deadline, (
                f"`ray start --head` {'ended' if head.poll() is not None else 'started no raylet in 120 s'}: "
                f"{said.read_text()[-2000:]}")
            time.sleep(0.2)
        yield SimpleNamespace(address=f"127.0.0.1:{port}", temp=temp)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.terminate()
        head.wait(60)
        if old is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow(seconds=28)  # a Ray cluster: started first
def test_a_study_and_a_search_on_a_ray_cluster(tiny_folder, tmp_path, ray_head):
    _study_on_ray_equals_the_local_one(tiny_folder, tmp_path, ray_head)
    _search_trials_run_two_at_a_time_as_ray_tasks(tiny_folder, ray_head)


def _study_on_ray_equals_the_local_one(tiny_folder, tmp_path, ray_head):
    import signal

    from cnnbench.studies.cluster import run_on_ray

    study = load_study(write_study(tmp_path, spec(tiny_folder.dataset)), profile="full")
    local = run_study(study, tmp_path / "local", log=lambda line: None)
    lines = []
    before = signal.getsignal(signal.SIGTERM)
    execute = functools.partial(run_on_ray, address=ray_head.address)  # --address HOST:PORT
    on_ray = run_study(study, tmp_path / "out", execute=execute, log=lines.append)
    assert signal.getsignal(signal.SIGTERM) is before  # Ray's handler gone again
    assert not ray.is_initialized()  # the driver left the cluster; the cluster runs on
    assert f"joining the Ray cluster at {ray_head.address}" in " ".join(lines)
    # the runs were the head's tasks: its workers' logs are in its session folder
    assert list(ray_head.temp.glob("session_*/logs/worker-*.out"))
    again = run_study(study, tmp_path / "out", execute=execute, log=lambda line: None)
    assert [o.status for o in local] == [o.status for o in on_ray] == [
        "finished", "finished", "finished", "failed"]
    for outcome in on_ray:
        mine, theirs = read_summary(outcome.run_dir), read_summary(tmp_path / "local" / outcome.run.name)
        assert {k: mine.get(k) for k in SAME if k != "init"} == {k: theirs.get(k) for k in SAME if k != "init"}
    assert (tmp_path / "out" / "bad" / "error.txt").exists()
    assert any("bad: FAILED" in line for line in lines)
    # c started from a's weights, on Ray as here: it waited for a
    assert read_summary(tmp_path / "out" / "c")["init"].startswith(str(tmp_path / "out" / "a"))
    # run again: the finished runs are skipped, the failed one tried again (and fails again)
    assert [o.status for o in again] == ["done-before", "done-before", "done-before", "failed"]


def _search_trials_run_two_at_a_time_as_ray_tasks(tiny_folder, ray_head):
    pytest.importorskip("optuna")
    import optuna

    from cnnbench.search import parse_space, run_search

    options = quick_options(tiny_folder, epochs=2, batch_size=32, lr=3e-3)
    options.pop("log_every")
    out, lines = tiny_folder.out / "search", []
    result = run_search(options, parse_space({"lr": {"low": 1e-4, "high": 3e-2, "log": True}}),
                        out, trials=3, log=lines.append, executor="ray", address=ray_head.address,
                        cpus_per_run=1)
    assert not ray.is_initialized()  # the driver left the cluster
    assert any(line.startswith(f"joining the Ray cluster at {ray_head.address}") for line in lines)
    assert "Ray: 2 trials at a time" in lines
    trials = result["trials"]
    assert len(trials) == 3 and {t["state"] for t in trials} <= {"complete", "pruned"}
    assert trials[0]["baseline"] and trials[0]["params"] == {"lr": 3e-3}
    for t in trials:  # what each task reported to the storage is its run's validation curve
        metrics = read_jsonl(f"{t['run_dir']}/metrics.jsonl")
        assert t["val_acc_by_epoch"] == {m["epoch"]: m["val_acc"] for m in metrics}
        summary = read_json(f"{t['run_dir']}/summary.json")
        assert (summary.get("test_acc") is not None) == (t["number"] == result["best"]["trial"])
    # the first two trials were out at the same time: each began before the other ended
    stored = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search.db'}")
    first, second = stored.get_trials()[:2]
    assert first.datetime_start < second.datetime_complete
    assert second.datetime_start < first.datetime_complete


def test_ray_options_without_ray_are_one_line(tmp_path, capsys):
    from cnnbench.cli import main

    assert main(["study", "run", "mnist-five", "--profile", "quick", "--address", "auto",
                 "--out", str(tmp_path)]) == 2
    assert "--address apply to --executor ray" in capsys.readouterr().err
