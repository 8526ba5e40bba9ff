"""cnnbench search: trials choose on validation only, the best is tested once, pruning stops
poor trials, and a search killed part-way continues where it stopped."""

from __future__ import annotations

import json
import os
import sys

import pytest

from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.search import parse_space, run_search
from cnnbench.training import train_run
from cnnbench.training.rundir import read_json, read_jsonl, saved_config
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401

SPACE = {"lr": {"low": 1e-5, "high": 3e-2, "log": True}, "batch_size": [16, 32]}


def base(tiny, **kw):
    options = quick_options(tiny, **{"epochs": 3, **kw})
    options.pop("log_every")
    return options


def test_a_search_chooses_on_validation_and_tests_only_the_best(tiny_folder):
    out = tiny_folder.out / "search"
    result = run_search(base(tiny_folder, batch_size=32, lr=3e-3), parse_space(SPACE), out,
                        trials=6, log=lambda line: None)
    trials = result["trials"]
    assert len(trials) == 6 and {t["state"] for t in trials} <= {"complete", "pruned"}
    assert any(t["state"] == "pruned" for t in trials), "the median pruner stopped no trial"
    # the first trial is the base options themselves
    assert trials[0]["baseline"] and trials[0]["params"] == {"lr": 3e-3, "batch_size": 32}
    complete = [t for t in trials if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["val_acc"])
    assert result["best"]["trial"] == best["number"]
    # the test set: touched by the best trial only, once, at the end
    for t in trials:
        summary = read_json(f"{t['run_dir']}/summary.json")
        tested = t["number"] == best["number"]
        assert (summary.get("test_acc") is not None) == tested, t["number"]
        assert os.path.exists(f"{t['run_dir']}/test_predictions.json") == tested
        assert summary["status"] == ("finished" if tested else "pruned" if t["state"] == "pruned"
                                     else "trained")
    assert result["best"]["test_acc"] == read_json(f"{best['run_dir']}/summary.json")["test_acc"]
    # a pruned trial stopped early (one that trained every epoch is finished, never pruned);
    # its curve is what it reported
    for pruned in (t for t in trials if t["state"] == "pruned"):
        epochs = [m["epoch"] for m in read_jsonl(f"{pruned['run_dir']}/metrics.jsonl")]
        assert epochs == sorted(pruned["val_acc_by_epoch"]) and len(epochs) < 3
    # best.yaml is the best trial's config, for `cnnbench train --config`
    again = resolve_config({}, config_file=out / "best.yaml")
    assert again == saved_config(best["run_dir"]).replace(out=None)
    assert (out / "search.md").read_text().count("![") == 3
    assert json.loads((out / "search.json").read_text())["best"] == result["best"]


def test_interrupted_then_run_again_continues_where_it_stopped(tiny_folder):
    out = tiny_folder.out / "search"
    space = parse_space(SPACE)
    calls = []

    def interrupting(config, out_dir, resume=False, **kw):
        calls.append((str(out_dir), resume))
        if len(calls) == 3:  # Ctrl-C in the third trial, after its first epoch
            on_epoch = kw["on_epoch"]

            def stop(metrics):
                on_epoch(metrics)
                raise KeyboardInterrupt
            kw["on_epoch"] = stop
        return train_run(config, out_dir=out_dir, resume=resume, **kw)

    options = base(tiny_folder, batch_size=32, lr=3e-3)
    with pytest.raises(KeyboardInterrupt) as err:
        run_search(options, space, out, trials=5, pruner="none", train_fn=interrupting,
                   log=lambda line: None)
    assert "search interrupted in trial 2" in str(err.value)
    lines = []
    result = run_search(options, space, out, trials=5, pruner="none", log=lines.append)
    assert any("trial 2 was interrupted" in line for line in lines)
    finished = [t for t in result["trials"] if t["state"] == "complete"]
    assert len(finished) == 5
    resumed = next(t for t in finished if t["resumed_from"])
    assert resumed["run_dir"] == str(out / "trial-002")  # the same run, continued
    assert [m["epoch"] for m in read_jsonl(out / "trial-002" / "metrics.jsonl")] == [1, 2, 3]
    # five runs: the interrupted trial's went on in its own directory, no sixth was made
    assert len(list(out.glob("trial-*"))) == 5
    # run again when done: nothing more is trained, the same best comes back
    assert run_search(options, space, out, trials=5, pruner="none",
                      log=lambda line: None)["best"] == result["best"]


def test_the_base_options_must_keep_a_validation_split_and_the_search_its_space(tiny_folder):
    with pytest.raises(UserError, match="--val-split > 0"):
        run_search(base(tiny_folder, val_split=0.0), parse_space(SPACE), tiny_folder.out / "s",
                   trials=1)
    out = tiny_folder.out / "s2"
    run_search(base(tiny_folder, epochs=1), parse_space(SPACE), out, trials=1, log=lambda l: None)
    with pytest.raises(UserError, match="holds a search with another space"):
        run_search(base(tiny_folder, epochs=1), parse_space({"lr": [0.1, 0.01]}), out, trials=1)


def test_a_trial_left_running_by_a_killed_process_is_resumed(tiny_folder):
    """A process killed outright (SIGKILL, a lost node) leaves its trial RUNNING in the
    database, as SystemExit does here in-process: the next run resumes that trial's run."""
    out = tiny_folder.out / "search"
    space = parse_space({"lr": {"low": 1e-4, "high": 3e-2, "log": True}})

    def killed(config, out_dir, resume=False, **kw):
        def stop(metrics):
            raise SystemExit(9)  # not caught by Optuna: the trial stays RUNNING
        return train_run(config, out_dir=out_dir, resume=resume, **{**kw, "on_epoch": stop})

    options = base(tiny_folder, epochs=3)
    with pytest.raises(SystemExit):
        run_search(options, space, out, trials=1, pruner="none", train_fn=killed,
                   log=lambda line: None)
    import optuna

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    lines = []
    result = run_search(options, space, out, trials=1, pruner="none", log=lines.append)
    assert any("trial 0 was interrupted" in line for line in lines)
    (trial,) = [t for t in result["trials"] if t["state"] == "complete"]
    assert trial["resumed_from"] == str(out / "trial-000") == trial["run_dir"]
    assert [m["epoch"] for m in read_jsonl(out / "trial-000" / "metrics.jsonl")] == [1, 2, 3]
    assert [t["state"] for t in result["trials"]] == ["fail", "complete"]


def test_without_optuna_one_line_names_the_extra(tiny_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(UserError) as err:
        run_search(base(tiny_folder), parse_space(SPACE), tiny_folder.out / "s", trials=1)
    assert "pip install 'cnnbench[search]'" in str(err.value)


def test_the_command_line_says_a_bad_space_in_one_line(tmp_path, capsys):
    from cnnbench.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {low: 0.01, high: 0.1}\n")
    assert main(["search", "--space", str(space), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'lr'" in err[0]


def test_a_trial_that_trained_every_epoch_is_finished_not_pruned(tiny_folder):
    """The pruner judges a trial between its epochs; after its last one the trial is done and
    counts as finished even when that last value is below the other trials' median."""
    calls = []

    def scripted(config, out_dir, resume=False, **kw):
        report = kw.get("on_epoch")
        if report is not None:  # the validation accuracies the pruner sees, by trial
            late_drop = len(calls) == 3
            calls.append(out_dir)
            curve = {1: 0.5, 2: 0.6, 3: 0.7 if late_drop else 0.95}  # trial 3 lags only at the end
            kw["on_epoch"] = lambda m: report({**m, "val_acc": curve[m["epoch"]]})
        return train_run(config, out_dir=out_dir, resume=resume, **kw)

    result = run_search(base(tiny_folder), parse_space(SPACE), tiny_folder.out / "search",
                        trials=4, train_fn=scripted, log=lambda line: None)
    last = result["trials"][3]
    assert last["state"] == "complete" and sorted(last["val_acc_by_epoch"]) == [1, 2, 3]
