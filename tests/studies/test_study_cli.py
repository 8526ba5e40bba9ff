"""``cnnbench study list|show|run`` (cnnbench.commands.study)."""

from __future__ import annotations

import csv
import json

import pytest

from cnnbench.cli import main


def test_study_show_prints_time_estimates(capsys):
    assert main(["study", "show", "transfer", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("time: ~") == 4 and "on 2 CPU cores (estimate:" in out
    assert "\ntotal: ~" in out

@pytest.mark.parametrize("here", ["table", "Some Other CPU"])
def test_the_estimate_names_the_cpu_it_was_measured_on_and_says_when_this_one_differs(
        capsys, monkeypatch, here):
    from cnnbench import devices
    from cnnbench.studies import throughput

    [measured] = throughput.measured_cpus()  # the shipped table: one CPU
    assert "CPU:" not in measured and "(" not in measured
    monkeypatch.setattr(devices, "cpu_name", lambda: measured if here == "table" else here)
    assert main(["study", "show", "transfer", "--profile", "cpu"]) == 0
    total = capsys.readouterr().out.split("\ntotal: ")[1]
    assert f"this project's 2-core CPU, {measured}: in bf16 for --amp auto or bf16" in total
    assert ("this machine's CPU is another (Some Other CPU)" in total) == (here != "table")


def test_study_show_prints_integers_as_integers(capsys):
    assert main(["study", "show", "mnist-five", "--profile", "full"]) == 0
    out = capsys.readouterr().out
    assert "reference 44426 (params)" in out and ".0 (params)" not in out
    assert "reference 97.44 (test_acc)" in out


def test_study_show_checks_the_set_overrides(capsys):
    assert main(["study", "show", "transfer", "--profile", "cpu", "--set", "optimizr=sgd"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "run pretrain-fashion_mnist" in captured.err and "did you mean 'optimizer'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1

def test_cli_study_list_and_bad_name(capsys):
    assert main(["study", "list"]) == 0
    assert "mnist-five" in capsys.readouterr().out
    assert main(["study", "run", "no-such-study", "--profile", "quick"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'no-such-study'" in err and len(err.strip().splitlines()) == 1

@pytest.mark.slow(seconds=7)  # started first, so that two workers end together
def test_study_run_mnist_five_quick_end_to_end(tiny_mnist_env, tmp_path, capsys):
    """The real trainer on a tiny MNIST (48 train / 12 test images), then the report."""
    out = tmp_path / "five"
    # the report's five networks (its resnet18-28px and lenet-54px variants and alexnet_large,
    # 58M parameters at 224 px, are built in test_lab_report_runs.py, not trained here)
    models = ["lenet", "alexnet", "resnet18", "mobilenet_v1", "googlenet"]
    argv = ["study", "run", "mnist-five", "--profile", "quick", "--out", str(out), "--quiet",
            "--only", *models]
    # without figures (tests/benchmarks/test_gpu_study_runs.py draws them for a real run of
    # this study, with its gallery; tests/report/ for fake runs)
    assert main([*argv, "--no-figures"]) == 0
    summaries = {m: json.loads((out / m / "summary.json").read_text()) for m in models}
    for summary in summaries.values():
        assert summary["status"] == "finished" and summary["profile"] == "quick"
        assert summary["limited"] and summary["epochs_completed"] == 1
        assert summary["split"] == {"train": 38, "val": 10, "test": 12}  # val_split 0.2
    assert summaries["resnet18"]["input_size"] == [1, 56, 56]
    assert summaries["resnet18"]["stem"] == "imagenet"
    assert summaries["lenet"]["input_size"] == [1, 28, 28]
    assert {m: s["model"] for m, s in summaries.items()} == {  # the report's own networks
        "lenet": "lenet5_five", "alexnet": "alexnet_five", "resnet18": "resnet18_five",
        "mobilenet_v1": "mobilenet_v1_five", "googlenet": "googlenet_five"}

    md = (out / "report.md").read_text()
    assert all(f"| {m} | {s['model']} | mnist | **quick, limited** |" in md
               for m, s in summaries.items())
    with (out / "results.csv").open() as fh:
        table = {row["run"]: row for row in csv.DictReader(fh)}
    assert sorted(table) == sorted(models)
    for model, row in table.items():
        assert (row["study"], row["status"], row["profile"]) == ("mnist-five", "finished", "quick")
        assert float(row["test_acc"]) == pytest.approx(summaries[model]["test_acc"])
        assert int(row["params"]) == summaries[model]["params"]
    html = (out / "report.html").read_text()
    assert html.count("<tr>") >= len(models) and all(m in html for m in models)
    assert "<img" not in html and not (out / "figures").exists()
    capsys.readouterr()

    before = {m: (out / m / "summary.json").stat().st_mtime_ns for m in models}
    assert main(argv + ["--no-report"]) == 0  # re-running a finished study does no work
    assert capsys.readouterr().out.count("finished before (profile quick), skipped") == len(models)
    assert {m: (out / m / "summary.json").stat().st_mtime_ns for m in models} == before


def test_study_show_of_a_quick_study_prints_seconds(capsys):
    assert main(["study", "show", "mnist-five", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    total = out.split("\ntotal: ")[1].splitlines()[0]
    assert total.startswith("~") and total.split()[1] == "s", total  # e.g. "~22 s", not "~0 min"
    assert "~0 min" not in out and out.count(" s on 2 CPU cores (estimate:") == 8


def test_without_profile_a_study_runs_the_profile_that_fits_the_machine(monkeypatch, capsys):
    """No GPU: `cpu`, saying so (never a day of full-recipe work by surprise); a GPU, or
    `--set device=cuda`: `full`. `study run` prints the estimate before it trains anything."""
    import torch

    from cnnbench.commands.study import default_profile

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_profile({})[0] == "cpu" and "no GPU" in default_profile({})[1]
    assert default_profile({"device": "cuda"})[0] == "full"
    assert main(["study", "show", "mnist-classics"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("profile cpu: no GPU here") and "profile cpu, 5 runs" in out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_profile({})[0] == "full" and default_profile({"device": "cpu"})[0] == "cpu"


def test_study_run_prints_its_estimate_before_training(tiny_mnist_env, monkeypatch, tmp_path, capsys):
    import cnnbench.studies.runner as runner

    def no_training(study, out, **kw):
        print("TRAINING STARTS")
        return []

    monkeypatch.setattr(runner, "run_study", no_training)  # the command imports it when it runs
    assert main(["study", "run", "mnist-classics", "--profile", "full", "--out",
                 str(tmp_path / "o"), "--no-report", "--only", "lenet*"]) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert "profile full" in first and "on 2 CPU cores (estimate" in first
    assert second == "TRAINING STARTS"


def test_set_keeps_off_a_word_for_text_options():
    """YAML reads `off` as False; `--set amp=off` means the amp mode "off"."""
    from cnnbench.commands.study import _parse_overrides

    assert _parse_overrides(["amp=off", "deterministic=yes", "epochs=2"]) == {
        "amp": "off", "deterministic": True, "epochs": 2}


def test_study_list_show_and_run_print_json_on_stdout_alone(tiny_mnist_env, monkeypatch, tmp_path, capsys):
    import cnnbench.studies.runner as runner
    from cnnbench.studies.runner import RunOutcome

    assert main(["study", "list", "--json"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["studies"]]
    assert "mnist-five" in names and "transfer" in names
    assert main(["study", "show", "transfer", "--profile", "cpu", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["study"] == "transfer" and len(shown["runs"]) == 4
    assert all(r["estimated_seconds"] > 0 and r["options"]["profile"] == "cpu" for r in shown["runs"])

    def no_training(study, out, log=print, **kw):
        log("a line of progress")
        return [RunOutcome(run, "finished", tmp_path / run.name) for run in study.runs]

    monkeypatch.setattr(runner, "run_study", no_training)
    assert main(["study", "run", "mnist-classics", "--out", str(tmp_path), "--no-report",
                 "--only", "lenet*", "--json"]) == 0
    captured = capsys.readouterr()
    ran = json.loads(captured.out)
    assert ran["study"] == "mnist-classics" and ran["report"] is None
    assert ran["runs"][0]["status"] == "finished" and "a line of progress" in captured.err


def test_a_study_evaluates_its_finished_runs_once(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import cnnbench.training.corruptions as corruptions_module
    from cnnbench.commands.study import _corrupt_finished

    done = []

    def fake(run_dir, images=None):
        done.append(run_dir.name)
        assert images == 100
        return {"mean_corruption_acc": 0.5, "clean_acc": 0.9, "seconds": 1.0}

    monkeypatch.setattr(corruptions_module, "evaluate_corruptions", fake)
    outcome = lambda name, status: SimpleNamespace(run=SimpleNamespace(name=name), status=status,  # noqa: E731
                                                   run_dir=tmp_path / name)
    (tmp_path / "had").mkdir()
    (tmp_path / "had" / "corruptions.json").write_text("{}")
    said = []
    _corrupt_finished([outcome("new", "finished"), outcome("before", "done-before"),
                       outcome("had", "finished"), outcome("broke", "failed")], said.append,
                      images=100)
    assert done == ["new", "before"] and len(said) == 2 and "under corruption 50.00%" in said[0]


def test_a_study_measures_the_latency_of_its_finished_runs(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import cnnbench.inference.latency as latency_module
    from cnnbench.commands.study import _time_finished

    measured = []
    monkeypatch.setattr(latency_module, "measure_checkpoint",
                        lambda run_dir: measured.append(run_dir.name) or {"eager": {"batch1_ms": 0.5}})
    outcome = lambda name, status: SimpleNamespace(run=SimpleNamespace(name=name), status=status,  # noqa: E731
                                                   run_dir=tmp_path / name)
    said = []
    _time_finished([outcome("a", "finished"), outcome("b", "done-before"), outcome("c", "failed")],
                   said.append)
    assert measured == ["a", "b"] and said[0].startswith("a: 0.50 ms per image at batch 1")
