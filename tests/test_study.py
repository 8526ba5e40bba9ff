"""Study files and the study runner, with a stub trainer (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from cnnbench.cli import main
from cnnbench.errors import UserError
from cnnbench.study import (PROFILES, build_config, estimate_seconds, list_studies, load_study,
                            run_study)
from report_fixtures import write_fake_run

TINY = {
    "name": "tiny",
    "description": "a test study",
    "report": "what the lab report did",
    "defaults": {"model": "lenet5", "dataset": "mnist", "epochs": 3, "seed": 42,
                 "scheduler": "none"},
    "profiles": {"quick": {"epochs": 1, "limit_train": 64, "limit_eval": 64},
                 "cpu": {"cap": {"epochs": 2, "limit_train": 100}}},
    "runs": [
        {"name": "a", "step": "baseline"},
        {"name": "b", "init": "c", "step": "+ b", "lr": 1e-4},
        {"name": "c", "step": "+ c", "epochs": 5,
         "reference": {"value": 50, "metric": "test_acc", "wording": "c reached 50%"}},
    ],
}


def write_study(tmp_path: Path, study: dict = TINY, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


class StubTrainer:
    """Stands in for cnnbench.run.train_run: records calls, writes a fake run directory."""

    def __init__(self, fail: tuple[str, ...] = ()):
        self.calls: list[tuple[str, object, bool]] = []
        self.fail = fail

    def __call__(self, config, out_dir, resume=False, argv=None, progress=True):
        name = Path(out_dir).name
        self.calls.append((name, config, resume))
        if name in self.fail:
            raise RuntimeError(f"deliberate failure of {name}")
        write_fake_run(out_dir, model=config.model, dataset=config.dataset, seed=config.seed,
                       test_acc=0.5 + 0.01 * (config.seed - 42), profile=config.profile,
                       config=config.to_dict())
        return json.loads((Path(out_dir) / "summary.json").read_text())


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


def test_profiles_caps_and_overrides(tmp_path):
    path = write_study(tmp_path)
    full = {r.name: r.options for r in load_study(path, profile="full").runs}
    assert full["a"]["epochs"] == 3 and full["c"]["epochs"] == 5 and "limit_train" not in full["a"]
    cpu = {r.name: r.options for r in load_study(path, profile="cpu").runs}
    assert cpu["a"]["epochs"] == 2 and cpu["c"]["epochs"] == 2  # capped ...
    assert cpu["a"]["limit_train"] == 100
    study = dict(TINY, profiles={"cpu": {"cap": {"epochs": 4}}})
    cpu = {r.name: r.options for r in load_study(write_study(tmp_path, study), profile="cpu").runs}
    assert cpu["a"]["epochs"] == 3  # ... never raised
    overridden = load_study(path, profile="quick", overrides={"epochs": 2, "device": "cpu"})
    assert all(r.options["epochs"] == 2 and r.options["device"] == "cpu" for r in overridden.runs)


def test_a_runs_own_profile_entry_replaces_the_studys(tmp_path):
    study = dict(TINY, runs=[{"name": "a", "epochs": 7, "profiles": {"cpu": {}}},
                             {"name": "b", "epochs": 7}])
    runs = {r.name: r.options for r in load_study(write_study(tmp_path, study), profile="cpu").runs}
    assert runs["a"]["epochs"] == 7 and "limit_train" not in runs["a"]
    assert runs["b"]["epochs"] == 2 and runs["b"]["limit_train"] == 100


def test_grid_expansion_names_and_axes(tmp_path):
    study = dict(TINY, grid_table={"rows": "model", "cols": "optimizer"}, runs=[{
        "name": "{model}-{optimizer}",
        "grid": {"model": ["lenet5", "simple_cnn"],
                 "optimizer": [{"label": "sgd", "optimizer": "sgd", "lr": 0.01},
                               {"label": "adam", "optimizer": "adam", "lr": 0.001}]}}])
    runs = load_study(write_study(tmp_path, study), profile="quick").runs
    assert [r.name for r in runs] == ["lenet5-sgd", "lenet5-adam", "simple_cnn-sgd",
                                      "simple_cnn-adam"]
    assert runs[1].axes == {"model": "lenet5", "optimizer": "adam"}
    assert runs[1].options["optimizer"] == "adam" and runs[1].options["lr"] == 0.001


@pytest.mark.parametrize("change, message", [
    ({"runs": [{"name": "a", "init": "nope"}]}, "not a run of this study"),
    ({"runs": [{"name": "a", "init": "b"}, {"name": "b", "init": "a"}]}, "cycle"),
    ({"runs": [{"name": "a"}, {"name": "a"}]}, "duplicate run names"),
    ({"runs": [{"name": "a", "reference": {"value": "high"}}]}, "value must be a number"),
    ({"colour": "red"}, "unknown key"),
    ({"runs": [{"name": "a", "once": "yes"}]}, "once must be true or false"),
])
def test_study_file_mistakes_are_user_errors(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_study(write_study(tmp_path, dict(TINY, **change)), profile="quick")


def test_an_invalid_option_fails_before_any_run_starts(tmp_path):
    study = dict(TINY, runs=[{"name": "a"}, {"name": "b", "optimizer": "sgdd"}])
    trainer = StubTrainer()
    with pytest.raises(UserError, match="run b"):
        run_study(load_study(write_study(tmp_path, study), profile="quick"), tmp_path / "out",
                  train_fn=trainer, log=lambda s: None)
    assert trainer.calls == []


def test_dataset_choice(tmp_path, monkeypatch):
    cifar = load_study("cifar10-tricks", profile="quick", dataset="cifar10_jpeg")
    assert {r.options["dataset"] for r in cifar.runs} == {"cifar10_jpeg"}
    mnist = load_study("mnist-five", profile="quick", dataset="fashion_mnist")
    assert {r.options["dataset"] for r in mnist.runs} == {"fashion_mnist"}
    cross = load_study("cross-dataset", profile="quick", dataset="cifar10")
    assert {r.options["dataset"] for r in cross.runs} == {"mnist", "fashion_mnist", "cifar10"}
    with pytest.raises(UserError, match="several datasets"):
        load_study("cross-dataset", profile="quick", dataset="fashion_mnist")
    # without the official files, a cifar10 study stops at once and names the way out
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="--dataset cifar10_jpeg"):
        run_study(load_study("cifar10-tricks", profile="quick"), tmp_path / "out",
                  train_fn=StubTrainer(), log=lambda s: None)


@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_studies_resolve_to_valid_configs(profile):
    names = [name for name, _ in list_studies()]
    assert {"mnist-classics", "mnist-five", "optimizers", "cifar10-tricks", "alexnet-ablation",
            "cross-dataset"} <= set(names)
    for name in names:
        study = load_study(name, profile=profile, dataset="cifar10_jpeg"
                           if name in ("cifar10-tricks", "alexnet-ablation") else None)
        for run in study.runs:
            config = build_config(run.options, f"{name}/{run.name}")
            assert config.profile == profile
            if profile == "quick":
                assert config.limit_train is not None and config.limit_train <= 512
            if run.reference is not None:
                assert run.reference.wording and run.reference.metric in ("test_acc", "val_acc")


def test_shipped_recipes_match_the_reports():
    five = {r.name: build_config(r.options) for r in load_study("mnist-five").runs}
    assert {n: c.dropout for n, c in five.items()} == {
        "lenet5": 0.0, "alexnet": 0.5, "resnet18": 0.5, "mobilenet_v1": 0.5, "googlenet": 0.2}
    assert all(c.optimizer == "adamw" and c.lr == 1e-3 and c.batch_size == 128
               and c.epochs == 5 and c.seed == 42 and c.val_split == 0.2 for c in five.values())
    assert five["lenet5"].resize is None and five["googlenet"].resize == 56
    ablation = {r.name: build_config(r.options) for r in load_study(
        "alexnet-ablation", dataset="cifar10_jpeg").runs}
    assert ablation["staged-batches"].stages() == [(32, 20), (128, 20), (256, 10)]
    tuned = ablation["tuned-lr"]
    assert (tuned.lr, tuned.milestones, tuned.gamma) == (0.05, [20, 40], 0.1)
    tricks = {r.name: r for r in load_study("cifar10-tricks", dataset="cifar10_jpeg").runs}
    assert tricks["simple-cnn-aug-l2"].init == "simple-cnn-aug"
    assert tricks["resnet18-tuned"].reference.value == 91.3
    # issue 7: one pretraining; every seed of the MNIST runs on the same 600 images
    transfer = load_study("transfer", profile="cpu", seeds=3).runs
    assert [r.name for r in transfer if r.init is None][0] == "pretrain-fashion_mnist"
    assert {r.init for r in transfer if r.init} == {"pretrain-fashion_mnist"}
    mnist = [build_config(r.options) for r in transfer if r.base != "pretrain-fashion_mnist"]
    assert len(mnist) == 9 and {(c.limit_train, c.epochs, c.lr) for c in mnist} == {(600, 10, 0.02)}
    lp_ft = [build_config(r.options) for r in transfer if r.base == "mnist-1pct-lp-ft"]
    assert {(c.freeze, c.unfreeze_at) for c in lp_ft} == {("backbone", 2)}


def test_estimate_counts_images_views_and_macs():
    from cnnbench.models import create_model
    from cnnbench.models.profile import count_macs

    options = dict(model="lenet5", dataset="mnist", epochs=2, val_split=0.1, limit_train=1000,
                   limit_eval=500, tta="mirror")
    cost = estimate_seconds(options, gflops=10.0, overhead_s=3e-4)
    assert cost.train_images == 2 * 1000
    assert cost.eval_images == (2 * 500 + 500) * 2  # validation every epoch + test, 2 TTA views
    macs = count_macs(create_model("lenet5", num_classes=10, in_chans=1, input_size=28), (1, 28, 28))
    assert cost.macs == macs
    expected = 2000 * (6 * macs / 10e9 + 3e-4) + 3000 * (2 * macs / 10e9 + 1e-4)
    assert cost.seconds == pytest.approx(expected)
    # the full MNIST split without limits: 54,000 training and 6,000 validation images
    full = estimate_seconds(dict(model="lenet5", dataset="mnist", epochs=1, val_split=0.1))
    assert (full.train_images, full.eval_images) == (54000, 6000 + 10000)
    assert estimate_seconds(dict(model="lenet5", dataset="imagefolder:/nonexistent")) is None


@pytest.mark.parametrize("name", ["mnist-classics", "mnist-five", "optimizers", "cifar10-tricks",
                                  "alexnet-ablation", "cross-dataset", "transfer"])
def test_cpu_profiles_fit_about_half_an_hour(name):
    # Issue 11: the cpu profile caps each study to about 30 minutes on 2 cores (estimated).
    study = load_study(name, profile="cpu", dataset="cifar10_jpeg"
                       if name in ("cifar10-tricks", "alexnet-ablation") else None)
    total = sum(estimate_seconds(run.options).seconds for run in study.runs)
    assert 60 < total <= 32 * 60, f"{name}: {total / 60:.0f} min"


def test_study_show_prints_time_estimates(capsys):
    assert main(["study", "show", "transfer", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("time: ~") == 4 and "on 2 CPU cores (estimate:" in out
    assert "\ntotal: ~" in out


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


def test_study_run_mnist_five_quick_end_to_end(tiny_mnist_env, tmp_path, capsys):
    """The real trainer on a tiny MNIST (48 train / 12 test images), then the report."""
    out = tmp_path / "five"
    argv = ["study", "run", "mnist-five", "--profile", "quick", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    models = ["lenet5", "alexnet", "resnet18", "mobilenet_v1", "googlenet"]
    summaries = {m: json.loads((out / m / "summary.json").read_text()) for m in models}
    for summary in summaries.values():
        assert summary["status"] == "finished" and summary["profile"] == "quick"
        assert summary["limited"] and summary["epochs_completed"] == 1
        assert summary["split"] == {"train": 38, "val": 10, "test": 12}  # val_split 0.2
    assert summaries["resnet18"]["input_size"] == [1, 56, 56]
    assert summaries["resnet18"]["stem"] == "imagenet"
    assert summaries["lenet5"]["input_size"] == [1, 28, 28]

    md = (out / "report.md").read_text()
    assert all(f"| {m} | {m} | mnist | **quick, limited** |" in md for m in models)
    with (out / "results.csv").open() as fh:
        table = {row["run"]: row for row in csv.DictReader(fh)}
    assert sorted(table) == sorted(models)
    for model, row in table.items():
        assert (row["study"], row["status"], row["profile"]) == ("mnist-five", "finished", "quick")
        assert float(row["test_acc"]) == pytest.approx(summaries[model]["test_acc"])
        assert int(row["params"]) == summaries[model]["params"]
    html = (out / "report.html").read_text()
    assert html.count("<tr>") >= len(models) and all(m in html for m in models)
    capsys.readouterr()

    before = {m: (out / m / "summary.json").stat().st_mtime_ns for m in models}
    assert main(argv) == 0  # re-running a finished study does no work
    assert capsys.readouterr().out.count("finished before (profile quick), skipped") == 5
    assert {m: (out / m / "summary.json").stat().st_mtime_ns for m in models} == before
