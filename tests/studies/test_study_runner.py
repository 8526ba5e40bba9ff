"""The study runner (cnnbench.studies.runner), with a stub trainer (no training)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnbench.errors import UserError
from cnnbench.studies import load_study, run_study
from study_fixtures import TINY, StubTrainer, write_study


def test_runs_are_ordered_by_init_and_start_from_the_checkpoint(tmp_path):
    study = load_study(write_study(tmp_path), profile="quick")
    assert [r.name for r in study.runs] == ["a", "c", "b"]
    trainer = StubTrainer()
    outcomes = run_study(study, tmp_path / "out", train_fn=trainer, log=lambda s: None)
    assert [name for name, _, _ in trainer.calls] == ["a", "c", "b"]
    assert [o.status for o in outcomes] == ["finished"] * 3
    config_b = trainer.calls[2][1]
    assert config_b.init == str(tmp_path / "out" / "c")
    assert config_b.lr == pytest.approx(1e-4)
    assert config_b.epochs == 1 and config_b.limit_train == 64 and config_b.profile == "quick"
    meta = json.loads((tmp_path / "out" / "b" / "study.json").read_text())
    assert meta["study"] == "tiny" and meta["init"] == "c" and meta["step"] == "+ b"
    assert meta["step_index"] == 1 and meta["profile"] == "quick"

def test_rerunning_a_finished_study_does_no_work(tmp_path):
    study = load_study(write_study(tmp_path), profile="quick")
    run_study(study, tmp_path / "out", train_fn=StubTrainer(), log=lambda s: None)
    again = StubTrainer()
    outcomes = run_study(study, tmp_path / "out", train_fn=again, log=lambda s: None)
    assert again.calls == []
    assert {o.status for o in outcomes} == {"done-before"}

def test_a_bigger_profile_trains_runs_a_smaller_one_finished_but_never_the_reverse(tmp_path):
    """`quick` then `full` in one folder: the full run replaces the smoke test; `quick` again
    afterwards keeps the full runs (a smoke test never overwrites hours of training)."""
    path, out = write_study(tmp_path), tmp_path / "out"
    run_study(load_study(path, profile="quick"), out, train_fn=StubTrainer(), log=lambda s: None)
    full = StubTrainer()
    logs: list[str] = []
    run_study(load_study(path, profile="full"), out, train_fn=full, log=logs.append)
    assert sorted(c[0] for c in full.calls) == ["a", "b", "c"]
    assert sum("finished before in the smaller quick profile" in line for line in logs) == 3
    assert {json.loads((out / r / "summary.json").read_text())["profile"] for r in "abc"} == {"full"}
    quick_again = StubTrainer()
    outcomes = run_study(load_study(path, profile="quick"), out, train_fn=quick_again,
                         log=lambda s: None)
    assert quick_again.calls == [] and {o.status for o in outcomes} == {"done-before"}


def test_a_smaller_profiles_run_is_kept_when_its_init_run_fails_in_the_bigger_one(tmp_path):
    """Run b starts from c: when c fails in `full`, b's finished quick run is kept (not deleted
    and then skipped)."""
    path, out = write_study(tmp_path), tmp_path / "out"
    run_study(load_study(path, profile="quick"), out, train_fn=StubTrainer(), log=lambda s: None)
    logs: list[str] = []
    run_study(load_study(path, profile="full"), out, train_fn=StubTrainer(fail=("c",)),
              log=logs.append)
    assert json.loads((out / "b" / "summary.json").read_text())["profile"] == "quick"
    assert any("b: kept its quick run" in line for line in logs)


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path):
    study = load_study(write_study(tmp_path), profile="quick")
    out = tmp_path / "out"
    outcomes = {o.run.name: o for o in run_study(study, out, train_fn=StubTrainer(fail=("c",)),
                                                 log=lambda s: None)}
    assert outcomes["a"].status == "finished"
    assert outcomes["c"].status == "failed"
    assert "deliberate failure of c" in outcomes["c"].message
    assert outcomes["b"].status == "skipped"  # it starts from c
    assert "deliberate failure of c" in (out / "c" / "error.txt").read_text()
    assert json.loads((out / "c" / "summary.json").read_text())["status"] == "failed"
    assert json.loads((out / "b" / "summary.json").read_text())["status"] == "skipped"

    retry = StubTrainer()  # a failed run is tried again; the finished one is not
    outcomes = {o.run.name: o.status for o in run_study(study, out, train_fn=retry,
                                                        log=lambda s: None)}
    assert [name for name, _, _ in retry.calls] == ["c", "b"]
    assert outcomes == {"a": "done-before", "c": "finished", "b": "finished"}
    assert not (out / "c" / "error.txt").exists()

def test_an_interrupted_run_resumes_unless_its_recipe_changed(tmp_path):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    run_study(load_study(path, profile="quick"), out, train_fn=StubTrainer(), log=lambda s: None)
    for name in ("a", "c"):  # as if killed after an epoch: a checkpoint, no final summary
        (out / name / "summary.json").unlink()
        (out / name / "last.ckpt").write_bytes(b"")
    study = dict(TINY, runs=[dict(TINY["runs"][0], lr=0.5), *TINY["runs"][1:]])
    trainer, lines = StubTrainer(), []
    run_study(load_study(write_study(tmp_path, study), profile="quick"), out, train_fn=trainer,
              log=lines.append)
    assert [(name, resume) for name, _, resume in trainer.calls] == [("a", False), ("c", True)]
    assert not (out / "a" / "last.ckpt").exists()
    assert any("recipe changed" in line and "lr" in line for line in lines)
    assert any(line.startswith("[3/3] b: finished before") for line in lines)

def test_only_runs_the_chosen_runs_and_what_they_start_from(tmp_path):
    study = load_study(write_study(tmp_path), profile="quick")
    trainer = StubTrainer()
    run_study(study, tmp_path / "out", train_fn=trainer, only=["b"], log=lambda s: None)
    assert [name for name, _, _ in trainer.calls] == ["c", "b"]
    with pytest.raises(UserError, match="matches no run"):
        run_study(study, tmp_path / "out", train_fn=trainer, only=["z*"], log=lambda s: None)

def test_seeds_expand_every_run_and_inits_follow_their_seed(tmp_path):
    study = load_study(write_study(tmp_path), profile="quick", seeds=3)
    names = [r.name for r in study.runs]
    assert sorted(names) == sorted(f"{n}-seed{s}" for n in "abc" for s in (42, 43, 44))
    trainer = StubTrainer()
    run_study(study, tmp_path / "out", train_fn=trainer, log=lambda s: None)
    for name, config, _ in trainer.calls:
        assert name.endswith(f"-seed{config.seed}")
        if name.startswith("b-"):
            assert config.init == str(tmp_path / "out" / f"c-seed{config.seed}")

def test_a_once_run_trains_one_seed_and_starts_every_seed_of_its_dependents(tmp_path):
    study = dict(TINY, runs=[{**run, "once": True} if run["name"] == "c" else run
                             for run in TINY["runs"]])
    study = load_study(write_study(tmp_path, study), profile="quick", seeds=3)
    names = [r.name for r in study.runs]
    assert "c" in names and not any(n.startswith("c-") for n in names)
    assert sorted(n for n in names if n.startswith("b-")) == ["b-seed42", "b-seed43", "b-seed44"]
    trainer = StubTrainer()
    run_study(study, tmp_path / "out", train_fn=trainer, log=lambda s: None)
    inits = {name: config.init for name, config, _ in trainer.calls if name.startswith("b-")}
    assert set(inits.values()) == {str(tmp_path / "out" / "c")} and len(inits) == 3

def test_an_invalid_option_fails_before_any_run_starts(tmp_path):
    study = dict(TINY, runs=[{"name": "a"}, {"name": "b", "optimizer": "sgdd"}])
    trainer = StubTrainer()
    with pytest.raises(UserError, match="run b"):
        run_study(load_study(write_study(tmp_path, study), profile="quick"), tmp_path / "out",
                  train_fn=trainer, log=lambda s: None)
    assert trainer.calls == []

def test_a_study_whose_data_is_missing_stops_at_once_in_one_line(tmp_path, monkeypatch, capsys):
    """No run folder, no report, no repeated failure: one line naming the study and the way out
    (a stand-in that is there, or the files and where to put them)."""
    from cnnbench.cli import main
    from cnnbench.data import datasets
    from cnnbench.data.errors import DatasetMissingError
    from cnnbench.studies.runner import check_datasets
    from conftest import write_cifar10_jpeg

    monkeypatch.setenv("CNNBENCH_DATA", f"{tmp_path / 'empty'}{os.pathsep}{tmp_path / 'shared'}")
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["study", "run", str(write_study(tmp_path)), "--out", str(out), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("cnnbench: error: study tiny cannot start: mnist: ")
    assert not out.exists()

    study = load_study("cifar10-tricks", profile="quick")
    with pytest.raises(DatasetMissingError, match="network access to download it"):
        check_datasets(study, study.runs, out)
    write_cifar10_jpeg(tmp_path / "shared")
    with pytest.raises(DatasetMissingError, match=r"^study cifar10-tricks cannot start: cifar10: "
                                                  r".*is there: --dataset cifar10_jpeg$"):
        check_datasets(study, study.runs, out)
    monkeypatch.setattr(datasets, "network_available", lambda url: True)
    check_datasets(study, study.runs, out)  # a network answers: the first run downloads it
    monkeypatch.undo()
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "empty"))
    for run in study.runs:  # runs that finished in a smaller profile are trained again
        summary = out / run.name / "summary.json"
        summary.parent.mkdir(parents=True)
        summary.write_text(json.dumps({"status": "finished", "profile": "quick"}))
    with pytest.raises(DatasetMissingError):
        check_datasets(load_study("cifar10-tricks", profile="cpu"), study.runs, out)
    check_datasets(study, study.runs, out)  # in the same (quick) profile they need no data
    with pytest.raises(DatasetMissingError):
        check_datasets(study, study.runs)  # no folder given: every run is checked


def test_a_failed_runs_error_txt_says_how_the_study_continues(tmp_path):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    run_study(load_study(path, profile="quick", seeds=2), out,
              train_fn=StubTrainer(fail=("c-seed42",)), log=lambda s: None)
    text = (out / "c-seed42" / "error.txt").read_text()
    assert text.startswith("Traceback") and "deliberate failure of c-seed42" in text
    assert (f"To continue the study, run `cnnbench study run {path} --out {out} --profile quick "
            "--seeds 2` again: runs that finished are skipped, this one starts again.") in text
    assert "--resume" not in text


class InterruptedTrainer(StubTrainer):
    """Like ``train_run`` on Ctrl-C in run ``c``: a checkpoint, its own error.txt and a
    failed summary, then KeyboardInterrupt."""

    def __call__(self, config, out_dir, resume=False, argv=None, progress=True):
        if Path(out_dir).name != "c":
            return super().__call__(config, out_dir, resume, argv, progress)
        self.calls.append(("c", config, resume))
        (out_dir / "last.ckpt").write_bytes(b"")
        (out_dir / "error.txt").write_text("interrupted (KeyboardInterrupt); continue with --resume\n")
        (out_dir / "summary.json").write_text(json.dumps({
            "name": "c", "status": "failed", "epochs_completed": 0,
            "error": "interrupted (KeyboardInterrupt); continue with --resume"}))
        raise KeyboardInterrupt


def test_an_interrupted_runs_error_txt_says_to_run_the_study_again(tmp_path):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    argv = ["cnnbench", "study", "run", str(path), "--out", str(out), "--profile", "quick"]
    study = load_study(path, profile="quick")
    with pytest.raises(KeyboardInterrupt):
        run_study(study, out, train_fn=InterruptedTrainer(), argv=argv, log=lambda s: None)
    text = (out / "c" / "error.txt").read_text()
    assert "--resume" not in text
    assert text.startswith("interrupted (KeyboardInterrupt)\n")
    assert (f"To continue the study, run `cnnbench study run {path} --out {out} --profile quick` "
            "again: runs that finished are skipped, this one resumes from its last checkpoint."
            ) in text
    summary = json.loads((out / "c" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["epochs_completed"] == 0
    assert summary["error"] == "interrupted (KeyboardInterrupt)"

    again = StubTrainer()  # running the study again resumes the interrupted run
    outcomes = {o.run.name: o.status for o in run_study(study, out, train_fn=again, argv=argv,
                                                        log=lambda s: None)}
    assert [(name, resume) for name, _, resume in again.calls] == [("c", True), ("b", False)]
    assert outcomes == {"a": "done-before", "c": "finished", "b": "finished"}
    assert not (out / "c" / "error.txt").exists()


def test_tensorboard_hparams_list_the_options_that_differ_between_the_runs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    study = load_study(write_study(tmp_path), profile="quick")
    run_study(study, tmp_path / "out", train_fn=StubTrainer(), log=lambda s: None)
    events = EventAccumulator(str(tmp_path / "out"))
    events.Reload()
    (content,) = events.PluginTagToContent("hparams").values()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    names = [h.name for h in experiment.hparam_infos]
    assert "lr" in names  # run b's own learning rate
    assert "model" not in names and "dataset" not in names  # the same in every run
    assert "device" not in names and "out" not in names  # not the recipe
    assert {m.name.tag for m in experiment.metric_infos} >= {"hparam/test_acc", "hparam/best_val_acc"}


def test_a_torchrun_study_driver_stopped_ends_its_job(tmp_path, monkeypatch):
    """Ctrl-C, or a SIGTERM that only the driver got (stop_on_sigterm makes it one), while a run
    trains under torchrun: the job is terminated, not waited for."""
    import subprocess
    import sys

    from cnnbench.config import TrainConfig
    from cnnbench.studies import runner
    from cnnbench.training import distributed

    started = []
    job = ("import sys, time\nprint('cnnbench: lenet5 ...', file=sys.stderr, flush=True)\n"
           "time.sleep(20)\n")  # without the stop, Popen waits for it to end (status 0)
    monkeypatch.setattr(distributed, "torchrun_command", lambda n, args: [sys.executable, "-c", job])
    real_popen = subprocess.Popen
    monkeypatch.setattr(runner.subprocess, "Popen",
                        lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])

    class Stopped:  # the driver's stderr: the stop arrives while it passes on the job's output
        def write(self, line):
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.sys, "stderr", Stopped())
    with pytest.raises(KeyboardInterrupt):
        runner.torchrun_train(2)(TrainConfig(), tmp_path / "run")
    [proc] = started
    assert proc.returncode == -15  # SIGTERM, at once
