"""Every benchmark script's CPU path with tiny sizes: it runs on the tests' tiny data, writes
its JSON into a temporary --results-dir (never benchmarks/results), and the JSON holds where
the numbers came from and numbers in a sane range."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cnnbench.devices import cpu_identity

from benchmark_fixtures import (BENCHMARKS, ROOT, fraction, load_script, positive, read_result,  # noqa: F401
                                results, run_script)
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401 (fixtures)


def test_mnist_time_to_acc(tiny_mnist_env, results, monkeypatch):
    assert run_script("mnist_time_to_acc", ["--seeds", "1", "--threads", "1", "--set", "epochs=2",
                                            "--set", "batch_size=16", "--target", "0.5",
                                            "--yardstick-steps", "2", "--yardstick-batch", "4",
                                            "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "mnist_time_to_acc")
    assert rec["dataset"] == "mnist" and rec["num_threads"] == 1 and rec["target"] == 0.5
    assert rec["overrides"] == {"epochs": "2", "batch_size": "16"} and rec["config"]["epochs"] == 2
    [run] = rec["runs"]
    assert [e["epoch"] for e in run["epochs"]] == [1, 2]
    for e in run["epochs"]:
        assert fraction(e["test_acc"], e["train_acc"]) and positive(e["train_images_per_s"], e["epoch_train_s"])
    assert run["best_test_acc"] == max(e["test_acc"] for e in run["epochs"])
    assert run["final_test_acc"] == run["epochs"][-1]["test_acc"]
    assert positive(run["total_train_time_s"], run["eval_time_s"], run["params"]) and run["total_train_time_s"] < 60
    if run["reached_at_epoch"] is not None:  # reached: at the first epoch at or above the target
        first = next(e for e in run["epochs"] if e["test_acc"] >= 0.5)
        assert run["reached_at_epoch"] == first["epoch"]
        assert run["train_time_to_target_s"] == rec["median_time_to_target_s"] == first["cumulative_train_s"]
    else:
        assert max(e["test_acc"] for e in run["epochs"]) < 0.5 and rec["median_time_to_target_s"] is None
    assert rec["median_total_train_time_s"] == run["total_train_time_s"]
    assert rec["reference"] is None
    assert rec["goal_s"] == 3.0 and rec["met"] == (run["final_test_acc"] >= 0.5 and
                                                   rec["mean_total_train_time_s"] <= 3.0)
    _check_yardstick(rec["airbench94_yardstick"], steps=2, batch=4)
    assert rec["mean_total_train_time_in_airbench94_runs"] == pytest.approx(
        run["total_train_time_s"] / (9.9 * rec["airbench94_yardstick"]["epoch_s"]))
    text = _render_script().render_mnist_time_to_acc(results)  # the README's paragraph
    assert "in <= 3 s on average: **" in text
    assert (f"the mean training is {rec['mean_total_train_time_in_airbench94_runs']:.5f} of an "
            f"airbench94-length run") in text


@pytest.mark.parametrize("times, met", [((2.0, 3.8), True), ((3.2, 3.0), False)])
def test_the_mnist_target_is_on_the_mean_of_the_seeds(results, monkeypatch, times, met):
    """Issue #33: >= 99.0% mean accuracy in <= 3 s of training on average (not every seed)."""
    module = load_script("mnist_time_to_acc", monkeypatch)
    runs = iter(times)

    def run_seed(config, target):
        seconds = next(runs)
        return {"total_train_time_s": seconds, "train_time_to_target_s": seconds, "final_test_acc": 0.992,
                "eval_time_s": 0.2, "minor_page_faults": 0}

    monkeypatch.setattr(module, "run_seed", run_seed)
    assert run_script("mnist_time_to_acc", ["--seeds", "2", "--yardstick-steps", "0", "--results-dir",
                                            str(results)], monkeypatch, module) == 0
    rec = read_result(results, "mnist_time_to_acc")
    assert rec["met"] is met and rec["goal_on"] == "mean" and rec["max_total_train_time_s"] == max(times)
    assert rec["airbench94_yardstick"] is None and rec["mean_total_train_time_in_airbench94_runs"] is None


@pytest.mark.parametrize("times, met", [((400.0, 500.0), True), ((460.0, 445.0), False)])
def test_the_cifar_targets_are_on_the_mean_of_the_seeds(monkeypatch, times, met):
    from cnnbench.config import TrainConfig

    module = load_script("cifar_cpu_time_to_acc", monkeypatch)
    runs = [{"test_acc": 0.91, "train_time_s": t, "eval_time_s": 5.0, "images_per_s": 1500.0,
             "gflops_per_s": 500.0} for t in times]
    entry = module.summarise("default", runs, TrainConfig())
    assert (entry["target_acc"], entry["target_train_s"], entry["target_on"]) == (0.906, 450.0, "mean")
    assert entry["met"] is met
    assert module.summarise("long", runs, TrainConfig())["target_acc"] == 0.92


def _render_script():
    spec = importlib.util.spec_from_file_location("bench_render_readme", BENCHMARKS / "render_readme.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _check_yardstick(yardstick, steps, batch, amp="off"):
    """One epoch of airbench94's network and batch, timed over ``steps`` steps of ``batch``
    images and scaled up to the 50,000 images of an epoch, in fp32 or bf16 (``amp``)."""
    assert yardstick["steps_timed"] == steps and yardstick["batch_size"] == batch
    assert yardstick["images_timed"] == steps * batch and yardstick["scaled_to_epoch"] is True
    assert "[64, 256, 256]" in yardstick["workload"] and yardstick["amp"] == amp
    assert ("fp32" if amp == "off" else "bf16 autocast") in yardstick["workload"]
    assert yardstick["epoch_s"] == pytest.approx(yardstick["seconds_timed"] * 50_000 / (steps * batch))
    assert yardstick["airbench94_run_s"] == pytest.approx(9.9 * yardstick["epoch_s"])


def test_cifar_cpu_time_to_acc(cifar_data, results, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_DATA", str(cifar_data.root))
    monkeypatch.setenv("CNNBENCH_CACHE", str(cifar_data.cache))
    runs_dir = tmp_path / "runs"
    assert run_script("cifar_cpu_time_to_acc", [
        "--dataset", "cifar10", "--seeds", "1", "--threads", "1", "--epochs", "3", "--limit-train", "16",
        "--limit-eval", "6", "--set", "batch_size=8", "--set", "amp=bf16", "--quiet", "--runs-dir", str(runs_dir),
        "--yardstick-steps", "1", "--yardstick-batch", "4", "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "cifar_cpu_time_to_acc")
    assert rec["dataset"] == "cifar10" and rec["limited"] is True and rec["num_threads"] == 1
    assert "JPEG" not in _render_script().render_cifar_cpu_time_to_acc(results)  # the real CIFAR-10
    [budget] = rec["budgets"]
    assert budget["budget"] == "default" and budget["seeds"] == 1 and budget["epochs"] == 3
    assert (budget["target_acc"], budget["target_train_s"]) == (0.906, 450.0)
    assert budget["met"] is False  # 16 images reach nothing like it
    # trained in bf16: timed against the fp32 yardstick and a bf16 one
    _check_yardstick(budget["airbench94_yardstick"], steps=1, batch=4)
    _check_yardstick(budget["airbench94_yardstick_bf16"], steps=1, batch=4, amp="bf16")
    for suffix in ("", "_bf16"):
        assert budget[f"train_time_in_airbench94_runs{suffix}"] == pytest.approx(
            budget["train_time_s_mean"] / budget[f"airbench94_yardstick{suffix}"]["airbench94_run_s"])
    row = _render_script().render_cifar_cpu_time_to_acc(results).splitlines()[4]  # the README's table
    assert (f"| {budget['train_time_in_airbench94_runs']:.3f} ({budget['airbench94_yardstick']['epoch_s']:.0f} s); "
            f"bf16: {budget['train_time_in_airbench94_runs_bf16']:.3f} "
            f"({budget['airbench94_yardstick_bf16']['epoch_s']:.0f} s) | 90.6% in 450 s (mean): missed") in row
    [run] = budget["runs"]
    assert fraction(run["test_acc"]) and budget["test_acc_mean"] == run["test_acc"] and budget["test_acc_std"] == 0
    assert positive(run["train_time_s"], run["images_per_s"], run["gflops_per_s"], run["macs"])
    assert run["images_seen"] == 3 * 16 and run["epochs_completed"] == 3
    assert run["images_per_s"] >= 0.9 * run["images_seen"] / run["train_time_s"]  # whitening: in the time only
    assert budget["config"]["lowres_size"] in (None, 0)  # every image at full size: 6 x MACs each
    assert run["gflops_per_s"] == pytest.approx(6 * run["macs"] * run["images_seen"] / run["train_time_s"] / 1e9)
    assert budget["gflops_per_s_mean"] == run["gflops_per_s"] and budget["images_per_s_mean"] == run["images_per_s"]
    assert Path(run["run_dir"]) == runs_dir / "default-seed0" and (runs_dir / "default-seed0" / "summary.json").exists()
    assert budget["environment"]["git_commit"] and budget["environment"]["date"]
    assert budget["environment"]["cpu_identity"] == cpu_identity()  # family, model, bf16 flags

    # a budget written before budgets kept their own environment keeps the file's when merged
    path = results / "cifar_cpu_time_to_acc-cpu.json"
    older = {**budget, "budget": "older"}
    del older["environment"]
    file_env = {**budget["environment"], "date": "2026-11-30T02:58:44+00:00", "git_commit": "older"}
    path.write_text(json.dumps({**rec, "environment": file_env, "budgets": [budget, older]}))

    # a variant (--name) is measured beside the budget, against its targets, and kept apart
    assert run_script("cifar_cpu_time_to_acc", [
        "--dataset", "cifar10", "--seeds", "1", "--threads", "1", "--epochs", "1", "--limit-train", "16",
        "--limit-eval", "6", "--set", "batch_size=16", "--set", "warmup_epochs=0", "--name", "b16", "--quiet", "--runs-dir", str(runs_dir),
        "--yardstick-steps", "0", "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "cifar_cpu_time_to_acc")
    assert [b["budget"] for b in rec["budgets"]] == ["default", "b16", "older"] and rec["budgets"][0] == budget
    assert rec["budgets"][2]["environment"] == file_env != rec["environment"]
    assert rec["overrides"] == {"batch_size": "8", "amp": "bf16", "epochs": "3", "limit_train": "16", "limit_eval": "6"}
    variant = rec["budgets"][1]
    assert (variant["variant_of"], variant["batch_size"], variant["epochs"]) == ("default", 16, 1)
    assert variant["overrides"]["batch_size"] == "16" and variant["target_train_s"] == 450.0
    assert (runs_dir / "b16-seed0" / "summary.json").exists()
    assert "| b16 (default with batch_size=16, warmup_epochs=0, epochs=1," in _render_script().render_cifar_cpu_time_to_acc(results)


def test_model_throughput(results, monkeypatch):
    assert run_script("model_throughput", ["--models", "lenet5", "--inputs", "1x28x28", "--threads", "1",
                                           "--batch-size", "8", "--budget-s", "0.05", "--repeats", "1",
                                           "--warmup", "1", "--max-steps", "3", "--channels-last", "off",
                                           "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "model_throughput")
    assert rec["num_threads"] == 1 and rec["channels_last"] is False and rec["skipped"] == []
    [row] = rec["rows"]
    assert (row["model"], row["input"]) == ("lenet5", "1x28x28")
    assert 40_000 < row["params"] < 100_000 and 200_000 < row["macs"] < 1_000_000  # LeNet-5's size
    assert positive(row["train_images_per_s"], row["plain_train_images_per_s"], row["infer_images_per_s"])
    assert 1 <= row["train_steps"] <= 3 and 1 <= row["infer_steps"] <= 3
    assert row["train_gflops_per_s"] == pytest.approx(6 * row["macs"] * row["train_images_per_s"] / 1e9)
    assert row["infer_gflops_per_s"] == pytest.approx(2 * row["macs"] * row["infer_images_per_s"] / 1e9)
    # one round: the ratio is that of its two speeds
    assert row["ratio_rounds"] == [pytest.approx(row["train_images_per_s"] / row["plain_train_images_per_s"])]
    assert row["ratio_vs_plain"] == row["ratio_rounds"][0]
    assert row["compute_bound"] is False and rec["min_ratio_vs_plain_compute_bound"] is None
    assert rec["amp"] == "off"


def test_model_throughput_times_both_paths_in_turns_keeps_the_best_and_the_rounds_median_ratio(monkeypatch):
    """Drift during a row favours neither path (plain, cnnbench | cnnbench, plain | ...), the
    cnnbench path is warmed up as plain was (its first step allocates the momentum buffers),
    each path's best time gives its images/s, and the ratio is the median of the rounds' own
    ratios: a machine that is twice as fast for one round does not make a path look faster."""
    bench = load_script("model_throughput", monkeypatch)
    calls = []
    # the machine's speed for each timed run of 10 steps, in the order they run (1 = normal):
    # twice as fast for plain's second run only; cnnbench's own steps are 10% slower than plain's
    speed = iter([1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # the first: plain's fitting run

    def fake(path, cost):
        def steps(self, n):
            calls.append((path, n))
            return cost * n / (next(speed) if n == 10 else 1.0)
        return steps

    monkeypatch.setattr(bench.Plain, "steps", fake("plain", 0.01))
    monkeypatch.setattr(bench.Cnnbench, "steps", fake("cnnbench", 0.011))
    args = SimpleNamespace(budget_s=0.1, warmup=2, min_steps=1, max_steps=10, repeats=5, compile=False)
    row = bench.measure("lenet5", "1x28x28", args, torch.device("cpu"), False, "off", 4)
    assert calls[:3] == [("plain", 1), ("plain", 1), ("plain", 10)] and calls[3] == ("cnnbench", 2)
    assert [c[0] for c in calls[4:]] == bench.turns(5)  # the rounds, after both paths are warm
    assert all(n == 10 for _, n in calls[4:])
    assert row["ratio_rounds"] == pytest.approx([1 / 1.1, 0.5 / 1.1, 1 / 1.1, 1 / 1.1, 1 / 1.1])
    assert row["ratio_vs_plain"] == pytest.approx(1 / 1.1)  # not 0.45, the ratio of the best times
    assert row["plain_train_images_per_s"] == pytest.approx(4 * 10 / 0.05)  # the fast run
    assert row["train_images_per_s"] == pytest.approx(4 * 10 / 0.11)
    assert row["repeats"] == 5 and row["train_steps"] == 10
    assert bench.turns(1) == ["plain", "cnnbench"]
    assert bench.turns(3) == ["plain", "cnnbench", "cnnbench", "plain", "plain", "cnnbench"]


def test_model_throughput_auto_precision_under_its_own_name(results, monkeypatch):
    import torch

    from cnnbench.devices import resolve_amp

    assert run_script("model_throughput", ["--models", "lenet5", "--inputs", "1x28x28", "--threads", "1",
                                           "--batch-size", "4", "--budget-s", "0.02", "--repeats", "1",
                                           "--warmup", "1", "--max-steps", "1", "--channels-last", "off",
                                           "--amp", "auto", "--name", "model_throughput-bf16",
                                           "--results-dir", str(results)], monkeypatch) == 0
    assert sorted(p.name for p in results.iterdir()) == ["model_throughput-bf16-cpu.json"]
    rec = read_result(results, "model_throughput-bf16")
    assert rec["amp"] == resolve_amp("auto", torch.device("cpu"))  # bf16 on this project's CPU
    assert rec["target_ratio_vs_plain"] == 0.95


def test_profile_step(results, monkeypatch):
    assert run_script("profile_step", ["--model", "lenet5", "--dataset", "mnist", "--batch-size", "8",
                                       "--steps", "2", "--threads", "1", "--results-dir", str(results)],
                      monkeypatch) == 0
    rec = read_result(results, "profile_step-lenet5")
    assert rec["model"] == "lenet5" and rec["steps"] == 2 and rec["num_threads"] == 1
    shares = rec["group_shares"]
    assert fraction(*shares.values()) and sum(shares.values()) == pytest.approx(1)
    assert shares["convolution"] > 0 and shares["optimizer"] > 0
    assert 0 < len(rec["top_ops"]) <= 12 and fraction(*(op["share"] for op in rec["top_ops"]))
    assert [op["share"] for op in rec["top_ops"]] == sorted((op["share"] for op in rec["top_ops"]), reverse=True)


def test_loader_vs_dataloader(tiny_mnist_env, results, monkeypatch):
    assert run_script("loader_vs_dataloader", ["--batch-size", "16", "--threads", "1", "--repeats", "1",
                                               "--workers", "0", "--results-dir", str(results)],
                      monkeypatch) == 0
    rec = read_result(results, "loader_vs_dataloader")
    ours, reference = rec["rows"]
    assert ours["pipeline"] == "cnnbench TensorLoader" and "num_workers=0" in reference["pipeline"]
    for row in rec["rows"]:
        assert row["images"] == 48 and positive(row["epoch_time_s"], row["images_per_s"])
        assert row["images_per_s"] == pytest.approx(48 / row["epoch_time_s"])
    assert ours["speedup_of_cnnbench"] == 1
    assert rec["speedup_vs_best_dataloader"] == pytest.approx(reference["epoch_time_s"] / ours["epoch_time_s"])
    assert positive(rec["speedup_vs_best_dataloader"])


@pytest.mark.slow(seconds=9)  # started first, so that two workers end together
def test_ddp_scaling(tiny_folder, results, monkeypatch):
    assert run_script("ddp_scaling", ["--epochs", "1", "--threads", "2", "--nproc", "2", "--repeats", "1",
                                      "--train-args", f"--recipe none --dataset {tiny_folder.dataset} "
                                                      "--batch-size 32 --val-split 0",
                                      "--note", "smoke", "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "ddp_scaling")
    assert rec["backend"] == "gloo" and rec["nproc"] == 2 and rec["note"] == "smoke"
    one, two = rec["rows"]
    assert (one["processes"], one["threads_per_process"]) == (1, 2)
    assert (two["processes"], two["threads_per_process"]) == (2, 1)
    for row in rec["rows"]:
        [run] = row["runs"]
        assert run["images_seen"] == 160 and fraction(*row["test_acc"])
        assert positive(row["median_train_time_s"], row["median_train_images_per_s"], row["median_wall_s"])
        assert row["median_wall_s"] > row["median_train_time_s"]
    assert one["speedup_train"] == 1
    assert two["speedup_train"] == pytest.approx(one["median_train_time_s"] / two["median_train_time_s"])


@pytest.mark.slow(seconds=6)  # started first, so that two workers end together
def test_compare_checkouts_same_checkout_is_identical(tiny_folder, results, monkeypatch):
    assert run_script("compare_checkouts", ["--old", str(ROOT), "--runs", "default", "--threads", "1",
                                            "--train-args", f"--dataset {tiny_folder.dataset} --epochs 1",
                                            "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "compare_checkouts")
    assert rec["identical"] is True and rec["threads"] == 1
    [row] = rec["runs"]
    assert row["run"] == "default" and row["identical"] is True
    assert row["args"][-4:] == ["--dataset", tiny_folder.dataset, "--epochs", "1"]
    for side in ("old", "new"):
        assert fraction(row[side]["test_acc"]) and row[side]["epochs_completed"] == 1
        assert positive(row[side]["train_time_s"], row[side]["wall_s"], row[side]["params"])
    assert {k: row["old"][k] for k in rec["compared"]} == {k: row["new"][k] for k in rec["compared"]}


def test_collect_tuning(tiny_folder, results, tmp_path, monkeypatch):
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run

    run_dirs = []
    for lr in (1e-3, 3e-3):
        out = tmp_path / f"lr{lr}"
        train_run(resolve_config(quick_options(tiny_folder, lr=lr, epochs=1)), out_dir=out, progress=False)
        run_dirs.append(str(out))
    run_script("collect_tuning", ["--name", "tiny_tuning", "--note", "lr", *run_dirs,
                                  "--results-dir", str(results)], monkeypatch)
    rec = read_result(results, "tiny_tuning")
    assert rec["note"] == "lr" and rec["differing_options"] == ["lr"]
    assert [r["differs"] for r in rec["runs"]] == [{"lr": 1e-3}, {"lr": 3e-3}]
    for run in rec["runs"]:
        assert run["status"] == "finished" and fraction(run["final_val_acc"]) and positive(run["train_time_s"])
        assert [e["epoch"] for e in run["epochs"]] == [1] and run["epochs"][0]["val_acc"] == run["final_val_acc"]
        assert "test_acc" not in json.dumps(run["epochs"])


def test_render_readme_from_a_results_dir(tmp_path):
    """The README's tables render from a copy of the committed results; --check says whether
    a README is up to date and writes nothing."""
    script_spec = importlib.util.spec_from_file_location("bench_render_readme", BENCHMARKS / "render_readme.py")
    script = importlib.util.module_from_spec(script_spec)
    script_spec.loader.exec_module(script)
    results = tmp_path / "results"
    results.mkdir()
    cpu_names = [n for n in script.RENDERERS if n != "gpu_speed"]  # gpu_speed: GPU files only
    for name in cpu_names:  # the committed results, marked as the copies
        rec = json.loads((BENCHMARKS / "results" / f"{name}-cpu.json").read_text())
        rec["environment"]["git_commit"] = f"copy-of-{name}"
        (results / f"{name}-cpu.json").write_text(json.dumps(rec))
    readme = tmp_path / "README.md"
    stale = "# x\n\n" + "\n\n".join(f"<!-- perf:{n}:start -->\nold\n<!-- perf:{n}:end -->" for n in script.RENDERERS)
    readme.write_text(stale + "\n")
    args = ["--results-dir", str(results), "--readme", str(readme)]
    assert script.main(args + ["--check"]) == 1 and readme.read_text() == stale + "\n"
    assert script.main(args) == 0
    text = readme.read_text()
    assert "\nold\n" not in text and "_not run yet_" not in text
    assert "_No GPU measurement is committed yet._" in text  # and no GPU number
    for name in cpu_names:
        rec = json.loads((results / f"{name}-cpu.json").read_text())
        block = text.split(f"<!-- perf:{name}:start -->")[1].split(f"<!-- perf:{name}:end -->")[0]
        assert f"commit copy-of-{name};" in block and f"({results / name}-cpu.json)" in block
        assert block.count("\n|") >= 3  # header, rule, a row at least
    mnist = json.loads((results / "mnist_time_to_acc-cpu.json").read_text())
    assert f"{mnist['runs'][0]['final_test_acc'] * 100:.2f}%" in text
    assert script.main(args + ["--check"]) == 0


def test_readme_tables_are_the_committed_results_rendered():
    """The README's Performance tables are generated (never typed): rendering the committed
    results changes nothing."""
    spec = importlib.util.spec_from_file_location("bench_render_readme", BENCHMARKS / "render_readme.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0


def test_gpu_results_render_only_from_a_gpu_file(tmp_path):
    """A gpu_speed file from a CUDA run renders its runs and the target's verdict; the CPU file
    a smoke run of the script writes is never shown as a result."""
    spec = importlib.util.spec_from_file_location("bench_render_readme", BENCHMARKS / "render_readme.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    env = {"device": "cuda", "device_name": "Some GPU", "torch_version": "2.11", "git_commit": "abc1234",
           "date": "2026-12-01T00:00:00+00:00"}
    cifar_run = {"seed": 0, "test_acc": 0.9071, "train_time_s": 2.93}
    rec = {"deadline_s": 480, "limited": False, "environment": env, "parts": {
        "cifar": {"status": "done", "dataset": "cifar10_jpeg", "runs": [cifar_run], "seeds": 1,
                  "test_acc_mean": 0.9071, "met": True, "target_acc": 0.906, "target_train_s": 3.2,
                  "reference": "ref", "cold": {"test_acc": 0.9068, "train_time_s": 6.5, "process_wall_s": 21.0}},
        "mnist": {"status": "done", "dataset": "mnist", "runs": [{"seed": 1, "test_acc": 0.9911, "train_time_s": 1.25}]}}}
    (tmp_path / "gpu_speed-cuda.json").write_text(json.dumps(rec))
    (tmp_path / "gpu_speed-cpu.json").write_text(json.dumps({**rec, "environment": {**env, "device": "cpu"}}))
    text = script.render_gpu_speed(tmp_path)
    assert text.count("Device: Some GPU") == 1  # the CPU smoke file is skipped
    assert "| `fast` cifar10_jpeg, warm | 0 | 90.71% | 2.9 | - |" in text
    assert "| `fast` cifar10_jpeg, cold start | 0 | 90.68% | 6.5 | process 21.0 s |" in text
    assert "| `fast` mnist | 1 | 99.11% | 1.2 | - |" in text or "| `fast` mnist | 1 | 99.11% | 1.3 | - |" in text
    assert "**met**" in text and "commit abc1234" in text
    (tmp_path / "gpu_speed-cuda.json").unlink()
    assert script.render_gpu_speed(tmp_path).startswith("_No GPU measurement is committed yet._")


def test_machine_load_is_the_other_processes_share_of_all_cores(monkeypatch):
    """/proc/stat busy seconds minus this process's CPU seconds, over wall time x cores."""
    sys.path.insert(0, str(BENCHMARKS))
    import common

    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(common, "_START", (100.0, 10.0, 1000.0))  # busy s, own s, wall s
    # 10 s later: the machine was busy 14 s, 12 of them this process's -> 2 s of others / 20 s
    monkeypatch.setattr(common, "_cpu_counters", lambda: (114.0, 22.0, 1010.0))
    assert common.machine_load() == {"other_cpu_share": 0.1, "otherwise_idle": False}
    monkeypatch.setattr(common, "_cpu_counters", lambda: (112.5, 22.0, 1010.0))
    assert common.machine_load() == {"other_cpu_share": 0.025, "otherwise_idle": True}


def test_cli_startup(results, monkeypatch):
    code = run_script("cli_startup", ["--repeats", "1", "--results-dir", str(results)], monkeypatch)
    rec = read_result(results, "cli_startup")
    assert rec["repeats"] == 1 and rec["target_s"] == 0.5
    assert [r["command"] for r in rec["commands"]][:2] == ["cnnbench --help", "cnnbench --version"]
    for row in rec["commands"]:
        assert positive(row["median_s"]) and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["heavy_imports"] == []  # what the benchmark measures, also under load
        assert row["meets_target"] == (row["median_s"] <= 0.5)
    assert code == (0 if rec["all_meet_target"] else 1)


def test_meta_passes(results, monkeypatch):
    """Both variants timed on the same models, the same MAC counts, and the mode restored."""
    from cnnbench.models import common, profile, registry

    assert run_script("meta_passes", ["--repeats", "2", "--size", "32", "--models", "lenet5",
                                      "googlenet", "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "meta_passes")
    assert rec["macs_equal"] is True and rec["input"] == [3, 32, 32] and rec["repeats"] == 2
    assert sorted(rec["macs"]) == ["googlenet", "lenet5"] and all(positive(m) for m in rec["macs"].values())
    for variant in ("shapes_only", "off"):
        for part in ("build", "count"):
            row = rec["variants"][variant][part]
            assert len(row["all_s"]) == 2 and row["min_s"] <= row["median_s"] <= row["max_s"]
    assert registry.shapes_only is profile.shapes_only is common.shapes_only


def test_corruptions_speed(tiny_folder, results, tmp_path, monkeypatch):
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run

    run = tmp_path / "run"
    train_run(resolve_config(quick_options(tiny_folder, epochs=1)), out_dir=run, progress=False)
    assert run_script("corruptions_speed", ["--run", str(run), "--repeats", "2", "--threads", "1",
                                            "--results-dir", str(results)], monkeypatch) == 0
    rec = read_result(results, "corruptions_speed")
    assert rec["test_images"] == 48 and rec["corruptions"] == 9 and rec["severities"] == [1, 2, 3, 4, 5]
    assert rec["images_evaluated"] == 48 * 46 and len(rec["seconds"]) == 2
    assert rec["median_s"] == pytest.approx(sum(rec["seconds"]) / 2) and rec["met"] is True
    assert fraction(rec["clean_acc"], rec["mean_corruption_acc"]) and len(rec["accuracy"]) == 9
    assert not (run / "corruptions.json").exists()  # a benchmark leaves the run as it was

