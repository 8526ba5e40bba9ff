"""benchmarks/gpu_speed.py on the CPU with tiny sizes (the JSON's structure, a cold run in a
fresh process, the deadline), and model_throughput.py's batch/target choice per device."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--seeds", "2", "--set", "limit_train=20", "--set", "limit_eval=6",
        "--set", "epochs=2", "--set", "warmup_epochs=1", "--set", "num_threads=1", "--cifar-dataset", "cifar10"]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_data(cifar_data, idx_data, monkeypatch):
    """Tiny CIFAR-10 and MNIST under one root, decoded into the cache in this process (the md5
    lists are patched here only; the cold run's fresh process then reads the cache)."""
    from cnnbench.data import load_dataset

    assert cifar_data.root == idx_data.root
    monkeypatch.setenv("CNNBENCH_DATA", str(cifar_data.root))
    monkeypatch.setenv("CNNBENCH_CACHE", str(cifar_data.cache))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    load_dataset("cifar10")
    load_dataset("mnist")
    return cifar_data


@pytest.mark.slow(seconds=9)  # started first, so that two workers end together
def test_tiny_run_writes_every_part(tiny_data, tmp_path):
    script = _load("gpu_speed")
    out, results = tmp_path / "out", tmp_path / "results"
    assert script.main(TINY + ["--out", str(out), "--results-dir", str(results), "--runs-dir", str(tmp_path / "runs"),
                               "--parts", "cifar,mnist,throughput", "--throughput-models", "lenet5",
                               "--throughput-inputs", "1x28x28", "--throughput-budget-s", "0.05",
                               "--throughput-margin-s", "1", "--throughput-arg=--threads=1", "--throughput-arg=--channels-last=on"]) == 0
    rec = json.loads((out / "gpu_speed-cpu.json").read_text())
    assert rec["benchmark"] == "gpu_speed" and rec["limited"] is True
    env = rec["environment"]
    assert env["device"] == "cpu" and env["torch_version"] and env["git_commit"] and env["date"]
    assert list(rec["parts"]) == ["cifar", "mnist", "throughput"]
    cifar = rec["parts"]["cifar"]
    assert cifar["status"] == "done", cifar["status"]
    assert cifar["cold"]["status"] == "done" and 0 <= cifar["data_prepare_s"] < 30
    assert cifar["cold"]["process_wall_s"] > cifar["cold"]["train_time_s"] > 0
    assert [r["seed"] for r in cifar["runs"]] == [0, 1] and cifar["seeds"] == 2
    assert all(0 <= r["test_acc"] <= 1 and r["train_time_s"] > 0 for r in cifar["runs"])
    assert (cifar["target_acc"], cifar["target_train_s"]) == (0.906, 3.2) and cifar["met"] is False
    assert cifar["model"] == "fastnet" and cifar["batch_size"] == 256  # the CPU settings on the CPU
    mnist = rec["parts"]["mnist"]
    assert mnist["status"] == "done" and len(mnist["runs"]) == 2 and mnist["test_acc_mean"] is not None
    thr = rec["parts"]["throughput"]
    assert thr["status"] == "done", thr
    assert thr["measured"] == 1 and thr["target_ratio_vs_plain"] == 0.95 and thr["complete"] is True
    assert sorted(p.name for p in out.iterdir()) == ["gpu_speed-cpu.json", "model_throughput-cpu.json"]
    assert sorted(p.name for p in results.iterdir()) == ["gpu_speed-cpu.json", "model_throughput-cpu.json"]
    assert json.loads((results / "gpu_speed-cpu.json").read_text()) == rec


def test_deadline_stops_parts_and_says_so(tiny_data, tmp_path):
    import torch

    from cnnbench.devices import resolve_amp

    script = _load("gpu_speed")
    out = tmp_path / "out"
    resolve_amp("auto", torch.device("cpu"))  # the process's first --amp auto verdict (a 0.5-1.6 s probe) before the clock
    # The cold run (a fresh process importing torch) cannot finish in 1.5 s: it is killed, and
    # the parts after it find the global deadline reached.
    assert script.main(TINY + ["--out", str(out), "--runs-dir", str(tmp_path / "runs"), "--deadline-s", "1.5",
                               "--parts", "cifar,mnist,throughput"]) == 0
    rec = json.loads((out / "gpu_speed-cpu.json").read_text())
    assert rec["elapsed_s"] < 6
    cifar = rec["parts"]["cifar"]
    assert cifar["cold"]["status"] == "stopped at the time budget"
    assert cifar["status"] == "cold run: stopped at the time budget"
    assert rec["parts"]["mnist"]["status"] == "not started: global deadline reached"
    assert rec["parts"]["throughput"]["status"] == "not started: global deadline reached"


def test_part_budget_stops_seeds(tiny_data, tmp_path):
    script = _load("gpu_speed")
    out = tmp_path / "out"
    assert script.main(TINY + ["--out", str(out), "--runs-dir", str(tmp_path / "runs"), "--parts", "mnist",
                               # more seeds than 3 s holds on any machine (50 once all fit)
                               "--seeds", "300", "--budget", "mnist=3"]) == 0
    mnist = json.loads((out / "gpu_speed-cpu.json").read_text())["parts"]["mnist"]
    assert mnist["status"].startswith("stopped at the time budget after ")
    assert 1 <= mnist["seeds"] < 300 and mnist["part_wall_s"] < 8


def test_throughput_batch_and_target_per_device():
    mt = _load("model_throughput")
    assert mt.plan("cpu") == (64, 0.95)
    assert mt.plan("cuda") == (1024, 0.9)
    assert mt.plan("cuda:0", "auto") == (1024, 0.9)
    assert mt.plan("cuda", "256") == (256, 0.9) and mt.plan("cpu", 32) == (32, 0.95)
    assert mt.smaller_batches(1024, "cuda") == [1024, 512, 256, 128, 64]
    assert mt.smaller_batches(64, "cpu") == [64]
    with pytest.raises(SystemExit):
        mt.plan("cpu", "0")


def test_compile_time_is_the_first_epochs_excess():
    script = _load("gpu_speed")
    est = script.compile_estimate([30.0, 2.0, 2.5, 2.1], 36.6)
    assert est["compile_time_s"] == pytest.approx(27.9)
    assert est["train_time_s_without_compile"] == pytest.approx(8.7)
    assert script.compile_estimate([30.0], 30.0)["compile_time_s"] is None
