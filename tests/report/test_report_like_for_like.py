"""Like for like, decided by the data: a difference from a report's number only for a run
whose dataset, network, every option (``--set`` included), profile and images are the
report's; every mismatch is named, and the number is still shown."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cnnbench.report import reproduction, write_report
from cnnbench.report.departures import recipe_departures
from cnnbench.report.records import group_runs, load_runs
from cnnbench.studies import load_study
from report_fixtures import write_fake_run
from study_fixtures import TINY, write_study

STUDY = copy.deepcopy(TINY)
STUDY["runs"] = [{"name": "net", "reference": {"value": 50, "metric": "test_acc",
                                                "source": "001:277"}}]


def made(tmp_path: Path, study: dict = STUDY, **load) -> reproduction.Reproduction:
    """Run the study's one run (a fake run directory written from its real study.json) and
    return its test-accuracy row of the reproduction table."""
    loaded = load_study(write_study(tmp_path, study), **{"profile": "full", **load})
    run = loaded.runs[0]
    out = tmp_path / "out" / run.name
    limited = bool(run.options.get("limit_train") or run.options.get("limit_eval"))
    write_fake_run(out, dataset=run.options["dataset"], test_acc=0.52, limited=limited,
                   profile=run.options["profile"], config=run.options)
    (out / "study.json").write_text(json.dumps(run.meta(loaded)))
    items = reproduction.reproductions(group_runs(load_runs([tmp_path / "out"])))
    (item,) = [i for i in items if i.ref["metric"] == "test_acc"]
    return item


def test_the_reports_recipe_gets_a_difference(tmp_path):
    item = made(tmp_path)
    assert item.on_recipe and item.verdict == "yes"
    assert item.difference == pytest.approx(2.0)


@pytest.mark.parametrize("load, reason", [
    ({"dataset": "fashion_mnist"}, "dataset fashion_mnist (the report's recipe: mnist)"),
    ({"overrides": {"lr": 0.5}}, "lr 0.5 (the report's recipe: 0.001)"),
    ({"overrides": {"epochs": 1}}, "epochs 1 (the report's recipe: 3)"),
    ({"overrides": {"augment": "flip"}}, "augment flip (the report's recipe: none)"),
    ({"overrides": {"model": "lenet5_five"}}, "model lenet5_five (the report's recipe: lenet5)"),
    ({"overrides": {"limit_train": 100}}, "trained or evaluated on a subset of the images"),
    ({"profile": "quick"}, "quick smoke test"),
    ({"profile": "cpu"}, "cpu profile, capped"),
])
def test_each_mismatch_removes_the_difference_and_says_why(tmp_path, load, reason):
    item = made(tmp_path, **load)
    assert item.difference is None and not item.on_recipe
    assert reason in item.verdict
    assert item.value is not None and item.value[0] == pytest.approx(52.0)  # still shown


def test_the_cifar10_jpeg_mirror_is_named_for_what_it_is(tmp_path):
    study = copy.deepcopy(STUDY)
    study["defaults"] = {**study["defaults"], "dataset": "cifar10"}
    item = made(tmp_path, study, dataset="cifar10_jpeg")
    assert item.difference is None
    assert "cifar10_jpeg, not the report's cifar10: a lossy JPEG mirror" in item.verdict
    assert "JPEG" in item.verdict


def test_seed_and_machine_are_not_part_of_the_recipe(tmp_path):
    item = made(tmp_path, seeds=2, overrides={"device": "cpu", "num_threads": 1})
    assert item.on_recipe and item.difference is not None


def test_a_run_without_a_recorded_recipe_is_not_compared(tmp_path):
    loaded = load_study(write_study(tmp_path, STUDY))
    out = tmp_path / "old"
    write_fake_run(out, profile="full", limited=False)
    meta = loaded.runs[0].meta(loaded)
    del meta["recipe"]  # a study.json written before cnnbench recorded the recipe
    (out / "study.json").write_text(json.dumps(meta))
    (record,) = load_runs([out])
    assert "not recorded" in recipe_departures(record.study)[0]
    (item,) = reproduction.reproductions(group_runs([record]))
    assert item.difference is None


def test_reproduction_csv_computes_no_difference_off_the_recipe(tmp_path):
    made(tmp_path, overrides={"lr": 0.5})
    files = write_report([tmp_path / "out"], figures=False)
    text = files.reproduction_csv.read_text()
    assert ",False," in text and "lr 0.5 (the report's recipe: 0.001)" in text
    import csv
    (row,) = [r for r in csv.DictReader(files.reproduction_csv.open()) if r["metric"] == "test_acc"]
    assert row["difference"] == "" and row["same_recipe"] == "False"


def test_a_study_whose_own_recipe_trains_on_a_subset_is_not_capped(tmp_path):
    study = copy.deepcopy(STUDY)
    study["defaults"] = {**study["defaults"], "limit_train": 600}
    item = made(tmp_path, study)
    assert item.group.capped == "" and item.on_recipe
    (tmp_path / "more").mkdir()
    item = made(tmp_path / "more", study, overrides={"limit_train": 300})
    assert item.group.capped == "limited" and item.difference is None


def test_a_refreshed_record_keeps_what_the_run_trained_with(tmp_path):
    """Re-running a study refreshes study.json of a finished run (nothing trained) but keeps
    its own options: a recipe changed since shows as a departure, never as the recipe."""
    from cnnbench.studies import run_study
    from study_fixtures import StubTrainer

    out = tmp_path / "out"
    study = load_study(write_study(tmp_path, STUDY))
    run_study(study, out, train_fn=StubTrainer(), log=lambda s: None)
    changed = copy.deepcopy(STUDY)
    changed["defaults"] = {**changed["defaults"], "lr": 0.01}
    changed["notes"] = ["a new note"]
    trainer = StubTrainer()
    run_study(load_study(write_study(tmp_path, changed)), out, train_fn=trainer, log=lambda s: None)
    assert trainer.calls == []  # finished: not trained again
    meta = json.loads((out / "net" / "study.json").read_text())
    assert meta["study_notes"] == ["a new note"] and meta["recipe"]["lr"] == 0.01
    assert meta["options"].get("lr") is None  # what it trained with
    (item,) = [i for i in reproduction.reproductions(group_runs(load_runs([out])))
               if i.ref["metric"] == "test_acc"]
    assert item.difference is None and "lr 0.001 (the report's recipe: 0.01)" in item.verdict


def test_a_refreshed_record_keeps_the_run_it_started_from(tmp_path):
    from cnnbench.studies import run_study
    from study_fixtures import StubTrainer

    out = tmp_path / "out"
    run_study(load_study(write_study(tmp_path, TINY)), out, train_fn=StubTrainer(),
              log=lambda s: None)
    changed = copy.deepcopy(TINY)
    del changed["runs"][1]["init"]  # b no longer starts from c in the study file
    run_study(load_study(write_study(tmp_path, changed)), out, train_fn=StubTrainer(),
              log=lambda s: None)
    assert json.loads((out / "b" / "study.json").read_text())["init"] == "c"
