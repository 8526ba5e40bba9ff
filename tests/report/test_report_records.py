"""cnnbench.report.records: where each quantity a reference can quote is read from a run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnbench.reference_metrics import REFERENCE_METRICS
from cnnbench.report.records import QUANTITIES, Quantity, RunRecord


def record(summary: dict | None = None, metrics: list[dict] | None = None, *, path: Path = Path("run"),
           config: dict | None = None, study: dict | None = None) -> RunRecord:
    """A run as the report reads it, without its files."""
    return RunRecord(path=path, config=config or {}, summary=summary or {}, metrics=metrics or [],
                     steps=[], study=study or {}, error=None)


# two epochs, then a line without an epoch (the test set's line): it is no epoch
METRICS = [{"epoch": 1, "val_acc": 0.5, "train_acc": 0.4, "val_loss": 1.5, "train_loss": 1.7,
            "epoch_time_s": 3.0, "epoch_test_acc": 0.45},
           {"epoch": 2, "val_acc": 0.7, "train_acc": 0.8, "val_loss": 0.9, "train_loss": 0.6,
            "epoch_time_s": 5.0, "epoch_test_acc": 0.65},
           {"test_acc": 0.69, "val_acc": 0.1, "train_acc": 0.2}]
SUMMARY = {"test_acc": 0.69, "best_val_acc": 0.7, "test_loss": 0.95, "train_time_s": 8.5,
           "params": 61706, "max_epoch_test_acc": 0.66}


@pytest.mark.parametrize("metric, value", [
    ("test_acc", 0.69), ("best_val_acc", 0.7), ("test_loss", 0.95), ("train_time_s", 8.5),
    ("params", 61706.0),
    ("val_acc", 0.7), ("train_acc", 0.8), ("val_loss", 0.9), ("train_loss", 0.6),  # last epoch
    ("epoch_time_s", 4.0),  # the mean over the epochs
    ("epoch1_test_acc", 0.45),  # the first epoch's
    ("max_epoch_test_acc", 0.66),  # the summary's, where the run wrote it
])
def test_each_quantity_is_read_from_its_place(metric, value):
    got = QUANTITIES[metric].read(record(SUMMARY, METRICS))
    assert got == value and isinstance(got, float)


def test_a_run_without_the_numbers_has_none_and_older_runs_their_epochs_best():
    empty = record({"params": True}, [{"loss": 1.0}])  # a bool is no number
    assert all(q.read(empty) is None for q in QUANTITIES.values())
    # a run from before max_epoch_test_acc was written: the best of its epochs
    older = record({}, [*METRICS[:2], {"epoch": 3, "epoch_test_acc": None}])
    assert QUANTITIES["max_epoch_test_acc"].read(older) == 0.65
    assert QUANTITIES["epoch1_test_acc"].read(record({}, METRICS[1:])) is None  # no epoch 1
    assert QUANTITIES["epoch_time_s"].read(record({}, [{"epoch": 1, "epoch_time_s": 2}])) == 2.0


def test_every_reference_metric_has_a_quantity_and_an_unknown_place_is_refused():
    assert set(QUANTITIES) == set(REFERENCE_METRICS)
    with pytest.raises(ValueError, match="unknown place 'nowhere'"):
        Quantity("x", "nowhere", "test_acc").read(record(SUMMARY, METRICS))


def test_a_reference_scales_by_its_unit_only_for_times():
    from cnnbench.report.records import reference_value

    assert reference_value({"kind": "time", "unit": "min", "value": 2}) == 120.0
    assert reference_value({"kind": "time", "value": 2}) == 2.0  # no unit: seconds
    assert reference_value({"kind": "count", "unit": "min", "value": 2}) == 2.0  # not a time


def test_a_group_has_no_value_of_a_quantity_cnnbench_does_not_know():
    from cnnbench.report.records import RunGroup

    group = SimpleNamespace(finished=[record(SUMMARY, METRICS)])
    assert RunGroup.quantity(group, "no_such_metric") is None
    assert RunGroup.quantity(group, "test_acc") == (0.69, 0.0)


def test_a_studys_references_are_completed_whatever_form_they_were_written_in():
    from cnnbench.report.records import study_references

    assert study_references({}) == [] and study_references({"reference": None}) == []
    one = {"value": 97.0, "source": "001:12"}  # one mapping: older run directories
    assert study_references({"reference": one}) == [
        {"value": 97.0, "source": "001:12", "metric": "test_acc", "kind": "accuracy", "unit": None,
         "comparable": True}]
    refs = study_references({"reference": [
        "a note, not a reference", {"metric": "test_acc"},  # no value: left out
        {"metric": "train_time_s", "value": 12.5, "unit": "min"},
        {"metric": "train_time_s", "value": 30},
        {"metric": "test_loss", "value": 0.2},
        {"metric": "params", "value": 61706},
        {"metric": "test_acc", "value": 0.0, "comparable": 0},  # a zero is a value
        {"metric": "no_such_metric", "value": 1, "comparable": "yes"}]})
    assert [(r["metric"], r["kind"], r["unit"], r["comparable"]) for r in refs] == [
        ("train_time_s", "time", "min", False), ("train_time_s", "time", "s", False),
        ("test_loss", "loss", None, False), ("params", "count", None, True),
        ("test_acc", "accuracy", None, False), ("no_such_metric", "unknown", None, True)]


def _touch_run(path: Path, name: str = "summary.json") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text("{}")
    return path


def test_run_directories_are_found_below_the_paths_given_in_order_once_each(tmp_path):
    from cnnbench.errors import UserError
    from cnnbench.report.records import find_run_dirs

    study = tmp_path / "study"
    b = _touch_run(study / "b", "config.yaml")
    a = _touch_run(study / "a", "metrics.jsonl")
    deep = _touch_run(study / "group" / "c" / "seed0", "study.json")
    _touch_run(study / ".hidden" / "x")       # hidden folders are not searched
    _touch_run(study / "figures" / "y")       # nor the report's figures
    (study / "notes.txt").write_text("a file, not a folder")
    (study / "empty").mkdir()
    assert find_run_dirs([study]) == [a, b, deep]
    assert find_run_dirs([b, str(study)]) == [b, a, deep]  # a run directory given is itself
    with pytest.raises(UserError, match="is not a directory"):
        find_run_dirs([study / "notes.txt"])
    with pytest.raises(UserError, match=r"no run directories in .*empty \(a run directory holds"):
        find_run_dirs([study / "empty"])
    # what marks a run directory: any of its files
    assert [find_run_dirs([_touch_run(tmp_path / n, n)]) for n in ("summary.json", "config.yaml",
            "metrics.jsonl", "study.json")] == [[tmp_path / n] for n in ("summary.json", "config.yaml",
                                                                           "metrics.jsonl", "study.json")]


def test_seeds_group_by_study_run_else_by_config_without_per_seed_keys_else_by_folder():
    from cnnbench.report.records import group_runs

    s1 = record(path=Path("s1"), study={"study": "demo", "run": "net"}, config={"seed": 1, "lr": 0.1})
    s2 = record(path=Path("s2"), study={"study": "demo", "run": "net"}, config={"seed": 2, "lr": 0.2})
    other_study = record(path=Path("s3"), study={"study": "other", "run": "net"})
    c1 = record(path=Path("c1"), config={"model": "lenet5", "seed": 0, "out": "runs/a"})
    c2 = record(path=Path("c2"), config={"model": "lenet5", "seed": 1, "out": "runs/b"})
    c3 = record(path=Path("c3"), config={"model": "vgg11", "seed": 0})
    bare1, bare2 = record(path=Path("d1")), record(path=Path("d2"))
    groups = group_runs([c1, s1, bare1, c3, s2, other_study, c2, bare2])
    assert [[r.path.name for r in g.records] for g in groups] == [
        ["c1", "c2"], ["s1", "s2"], ["d1"], ["c3"], ["s3"], ["d2"]]
    assert groups[1].key == ("study", "demo", "net") and groups[2].key == ("dir", "d1")
    assert groups[0].key[0] == "config"
    # the same options written in another order, and a value JSON has no type for (a YAML date)
    import datetime

    a = record(path=Path("a"), config={"model": "lenet5", "lr": 0.1, "note": datetime.date(2026, 1, 2), "seed": 0})
    b = record(path=Path("b"), config={"seed": 1, "note": datetime.date(2026, 1, 2), "lr": 0.1, "model": "lenet5"})
    assert [[r.path.name for r in g.records] for g in group_runs([a, b])] == [["a", "b"]]


def test_runs_load_in_the_studys_order(tmp_path):
    import json

    from cnnbench.report.records import load_runs

    for name, position in (("a", 2), ("b", 0), ("d", 1), ("z", None)):
        run = _touch_run(tmp_path / name)
        if position is not None:
            (run / "study.json").write_text(json.dumps({"position": position}))
    # a run outside a study comes first, with the study's first run, in folder order
    assert [r.path.name for r in load_runs([tmp_path])] == ["b", "z", "d", "a"]


def test_why_a_group_is_not_set_against_the_report_each_reason_once():
    from cnnbench.report.records import RunGroup

    def seed(profile, options, limited=False):
        study = {"study": "demo", "run": "net", "profile": profile, "options": options,
                 "recipe": {"lr": 0.1, "epochs": 5}}
        return record({"limited": limited}, study=study)

    recipe = {"lr": 0.1, "epochs": 5}
    off = {"lr": 0.2, "epochs": 5}
    assert RunGroup(("k",), [seed("full", recipe)]).recipe_gaps() == []
    # two seeds off the recipe the same way: said once
    assert RunGroup(("k",), [seed("full", off), seed("full", off)]).recipe_gaps() == [
        "lr 0.2 (the report's recipe: 0.1)"]
    # profiles other than full (a seed without one is not named)
    assert RunGroup(("k",), [seed("tiny", recipe), seed("big", recipe), seed(None, recipe)]).recipe_gaps() == [
        "profile big/tiny, not the study's full recipe"]
    assert RunGroup(("k",), [seed(None, recipe)]).recipe_gaps() == ["not run by a study's full profile"]
    # capped to fewer images: the limit is said once, in words, not again as an option
    limited = seed("full", {**recipe, "limit_train": 256}, limited=True)
    assert RunGroup(("k",), [limited]).recipe_gaps() == [
        "trained or evaluated on a subset of the images (limit_train / limit_eval)"]
    # a quick run off the recipe: the profile, then what else differs (its image limits are the profile's)
    quick = seed("quick", {**off, "limit_train": 256}, limited=True)
    assert RunGroup(("k",), [quick]).recipe_gaps() == ["quick smoke test", "lr 0.2 (the report's recipe: 0.1)"]
    # and the study's own word on how the run differs comes last
    differs = seed("full", off)
    differs.study["differs"] = "the report's images were 28 px"
    assert RunGroup(("k",), [differs]).recipe_gaps() == [
        "lr 0.2 (the report's recipe: 0.1)", "the report's images were 28 px"]


def test_a_run_directory_loads_every_file_and_reads_a_value_from_the_first_that_sets_it(tmp_path):
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: lenet5\nlr: 0.1\nseed: 3\nepochs: null\n")
    (run / "summary.json").write_text(json.dumps({"lr": 0.2, "status": "failed", "seed": None}))
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (run / "train_steps.jsonl").write_text('{"step": 1}\n')
    (run / "study.json").write_text(json.dumps({"options": {"epochs": 4, "dropout": 0.5}}))
    (run / "error.txt").write_bytes(b"Traceback\nRuntimeError: bad byte \xff\n")  # not UTF-8
    record = RunRecord.load(run)
    assert (record.path, record.config["model"], record.summary["status"]) == (run, "lenet5", "failed")
    assert record.metrics == [{"epoch": 1}, {"epoch": 2}] and record.steps == [{"step": 1}]
    assert record.study == {"options": {"epochs": 4, "dropout": 0.5}}
    assert record.error == "Traceback\nRuntimeError: bad byte \ufffd\n"
    assert record.get("lr") == 0.2            # summary.json first
    assert record.get("seed") == 3            # then config.yaml (the summary's null is no value)
    assert record.get("epochs") == 4          # then the study's options
    assert record.get("nothing") is None and record.get("nothing", "default") == "default"
    # a run that failed before writing anything but its folder
    empty = RunRecord.load(_touch_run(tmp_path / "empty", "unrelated.txt"))
    assert (empty.config, empty.summary, empty.metrics, empty.steps, empty.study, empty.error) == (
        {}, {}, [], [], {}, None)
