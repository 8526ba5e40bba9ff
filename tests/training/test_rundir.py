"""The run directory's small file helpers (cnnbench.training.rundir): reading a run's YAML,
cutting its logs back to a checkpoint on resume, choosing the misclassified images, naming a
default run directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import rundir
from cnnbench.training.rundir import (misclassified_rows, now, read_json, read_jsonl, read_yaml,
                                      truncate_jsonl, write_json)
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401


@pytest.mark.parametrize("read, name, good, value, other", [
    (read_yaml, "config.yaml", "model: lenet5\nepochs: 2\n", {"model": "lenet5", "epochs": 2},
     ["- lenet5\n- 2\n", "just words\n", "model: [unclosed\n"]),
    (read_json, "summary.json", '{"status": "finished"}', {"status": "finished"},
     ["[1, 2]", '{"status": ']),
])
def test_a_run_file_reads_as_a_mapping_or_nothing(tmp_path, read, name, good, value, other):
    """A mapping as written; {} for a missing file, one that holds something else (a list, a
    word) and one that is not the format (cut short by a kill)."""
    path = tmp_path / name
    assert read(path) == {}
    path.write_text(good)
    assert read(path) == value
    for text in other:
        path.write_text(text)
        assert read(path) == {}, text


def test_read_jsonl_skips_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "train_steps.jsonl"
    assert read_jsonl(path) == []
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    # a resumed run appends after the cut line: the records after it count too
    path.write_text('{"step": 1}\n{"st{"step": 2}\n{"step": 3}\n')
    assert read_jsonl(path) == [{"step": 1}, {"step": 3}]


def test_a_json_file_is_written_whole_through_a_hidden_file_then_moved(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text("old")
    moves = []
    real = rundir.os.replace
    monkeypatch.setattr(rundir.os, "replace", lambda a, b: (moves.append((a, b)), real(a, b)))
    write_json(str(path), {"status": "finished", "acc": 0.5})
    assert moves == [(tmp_path / ".summary.json.tmp", path)]
    assert path.read_text() == '{\n  "status": "finished",\n  "acc": 0.5\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_runs_times_are_local_to_the_second_with_their_offset():
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", now()), now()


def test_truncate_jsonl_keeps_the_records_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    truncate_jsonl(path, "epoch", 2)  # no log yet: nothing to cut, nothing written
    assert not path.exists()
    records = [{"epoch": 1, "acc": 0.5}, {"epoch": 2, "acc": 0.6}, {"epoch": 3, "acc": 0.7},
               {"epoch": 2.5}, {"note": "no epoch"}, {"epoch": "2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    truncate_jsonl(path, "epoch", 2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:2]


def test_misclassified_rows_take_each_class_in_turn():
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = torch.tensor([1, 1, 0, 0, 1, 0, 0, 2])  # wrong: 0, 1 (class 0), 3 (1), 5, 6 (2)
    assert misclassified_rows(predictions, targets).tolist() == [0, 3, 5, 1, 6]
    assert misclassified_rows(predictions, targets, limit=2).tolist() == [0, 3]
    assert misclassified_rows(targets, targets).tolist() == []  # nothing wrong


def test_the_gallery_holds_32_images_unless_told_otherwise():
    targets = torch.arange(40) % 4
    picked = misclassified_rows((targets + 1) % 4, targets)  # every image wrong
    assert len(picked) == 32 and len(set(picked.tolist())) == 32
    assert misclassified_rows(targets, targets).tolist() == []  # none wrong: none shown


def test_the_saved_gallery_holds_32_images_unless_told_otherwise(tmp_path):
    from cnnbench.training.rundir import MISCLASSIFIED, save_misclassified

    targets = torch.arange(40) % 4
    images = torch.zeros(40, 1, 2, 2, dtype=torch.uint8)
    assert save_misclassified(tmp_path, images, (targets + 1) % 4, targets) == 32
    assert len(torch.load(tmp_path / MISCLASSIFIED)["index"]) == 32
    assert save_misclassified(tmp_path, images, (targets + 1) % 4, targets, limit=5) == 5


def test_a_fresh_run_in_an_old_folder_drops_its_logs_and_a_resumed_one_only_its_error(tmp_path):
    from cnnbench.config import TrainConfig
    from cnnbench.training.rundir import open_run_dir

    logs = ["metrics.jsonl", "train_steps.jsonl", "summary.json", "error.txt", "test_predictions.json",
            "train.log", "events.out.tfevents.1.host"]
    kept = ["last.ckpt", "notes.md"]
    for name in logs + kept:
        (tmp_path / name).write_text("x")
    config = TrainConfig(model="lenet5", dataset="mnist", epochs=2)
    open_run_dir(tmp_path, config, fresh=False)  # resuming: only the error of the killed attempt goes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*logs, *kept, "config.yaml"} - {"error.txt"})
    open_run_dir(tmp_path, config, fresh=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "config.yaml"])
    assert read_yaml(tmp_path / "config.yaml")["epochs"] == 2


def test_a_resumed_runs_event_file_waits_to_sort_after_the_killed_processes(tmp_path, caplog):
    """TensorBoard reads event files in name order: second opened, host, process id. A file
    opened in the same second as an earlier one could sort first (a lower process id)."""
    from cnnbench.training.rundir import after_earlier_event_files

    slept = []
    wait = lambda now: after_earlier_event_files(tmp_path, clock=lambda: now, sleep=slept.append)  # noqa: E731
    assert wait(1796605993.4) == 0 and slept == []  # no event file yet
    (tmp_path / "events.out.tfevents.1796605993.vm.27301.0").write_text("")
    (tmp_path / "events.out.tfevents.1796605990.vm.99999.0").write_text("")
    (tmp_path / "events.out.tfevents.x.vm.1.0").write_text("")  # not TensorBoard's: not read
    (tmp_path / "events.out.tfevents.\u00b2.vm.1.0").write_text("")  # a digit int() refuses
    assert wait(1796605993.25) == pytest.approx(0.76)  # just past the next second after the newest
    assert wait(1796605994.0) == 0  # already later
    assert wait(1796605990.5) == 0  # more than 2 s ahead (a clock set back): no waiting
    [warning] = [r.getMessage() for r in caplog.records if r.name == "cnnbench.training"]
    assert warning.startswith(f"cnnbench: warning: {tmp_path} holds a TensorBoard file stamped 2 s ahead")
    assert slept == [pytest.approx(0.76)]


def test_a_resumed_runs_event_file_is_kept_where_it_sorts_last_and_opened_again_where_not(tmp_path):
    """The writer's own file decides: one that sorts after the earlier files is kept (no
    waiting); one that would be read first is closed, removed, and opened again after the wait."""
    from cnnbench.training.rundir import open_after_earlier_event_files

    names, events = iter(["events.out.tfevents.1796605993.vm.27301.0",
                          "events.out.tfevents.1796605993.vm.30000.0",   # sorts last: kept
                          "events.out.tfevents.1796605993.vm.12345.0",   # sorts first: again
                          "events.out.tfevents.1796605994.vm.12345.1"]), []

    class Writer:
        def __init__(self):
            self.name = next(names)
            (tmp_path / self.name).write_text("")
            self.closed = False
            events.append(self)

        def close(self):
            self.closed = True

    slept = []
    opened = lambda: open_after_earlier_event_files(tmp_path, Writer, clock=lambda: 1796605993.5,  # noqa: E731
                                                    sleep=slept.append)
    first = opened()  # no earlier file
    assert not first.closed and slept == []
    second = opened()
    assert second is events[1] and not second.closed and slept == []
    third = opened()
    assert events[2].closed and not (tmp_path / events[2].name).exists() and slept == [pytest.approx(0.51)]
    assert third is events[3] and not third.closed
    assert sorted(p.name for p in tmp_path.iterdir()) == [e.name for e in (events[0], events[1], events[3])]


def test_a_writer_whose_file_is_not_seen_is_opened_again_after_the_wait(tmp_path):
    from cnnbench.training.rundir import open_after_earlier_event_files

    (tmp_path / "events.out.tfevents.1796605993.vm.27301.0").write_text("")
    writers, slept = [], []

    class Writer:  # writes no file of its own where this function looks
        def __init__(self):
            writers.append(self)
            self.closed = False

        def close(self):
            self.closed = True

    assert open_after_earlier_event_files(tmp_path, Writer, clock=lambda: 1796605993.0,
                                          sleep=slept.append) is writers[1]
    assert writers[0].closed and slept == [pytest.approx(1.01)]


def test_a_saved_config_with_an_unknown_option_names_its_file(tmp_path):
    from cnnbench.errors import UserError
    from cnnbench.training.rundir import CONFIG, saved_config

    (tmp_path / CONFIG).write_text("lrr: 0.1\n")
    with pytest.raises(UserError) as info:
        saved_config(tmp_path)
    assert str(info.value) == f"{tmp_path / CONFIG}: unknown option 'lrr'; did you mean 'lr'?"


def test_a_resumed_run_keeps_its_saved_config_but_the_machine_and_the_records(tmp_path):
    from cnnbench.config import TrainConfig
    from cnnbench.errors import UserError
    from cnnbench.training.rundir import open_run_dir, prepare_run_dir

    run = tmp_path / "run"
    saved = TrainConfig(model="lenet5", dataset="mnist", epochs=3, lr=0.1, out=str(run), num_threads=2)
    open_run_dir(run, saved, fresh=True)
    assert prepare_run_dir(None, run, resume=True) == (saved, run)
    # another machine and other records: taken; the output folder stays the saved one
    moved = saved.replace(num_threads=1, log_every=7, device="cpu", out=str(tmp_path / "elsewhere"))
    config, run_dir = prepare_run_dir(moved, run, resume=True)
    assert run_dir == run and config == saved.replace(num_threads=1, log_every=7, device="cpu")
    # the directory from the config's --out when none is given
    assert prepare_run_dir(saved, None, resume=True) == (saved, run)
    with pytest.raises(UserError, match="options differ: epochs, lr; drop them"):
        prepare_run_dir(moved.replace(lr=0.2, epochs=4), run, resume=True)
    with pytest.raises(UserError, match=r"^--resume needs the run directory: --resume DIR \(or --out DIR\)$"):
        prepare_run_dir(saved.replace(out=None), None, resume=True)
    with pytest.raises(UserError, match=r"^--resume needs the run directory"):  # nor a config
        prepare_run_dir(None, None, resume=True)


def test_a_new_run_never_lands_on_a_runs_checkpoints(tmp_path, monkeypatch):
    from cnnbench.config import TrainConfig
    from cnnbench.errors import UserError
    from cnnbench.training.rundir import plan_run, prepare_run_dir

    config = TrainConfig(model="lenet5", dataset="mnist", out=str(tmp_path / "from-config"))
    assert prepare_run_dir(config, tmp_path / "given", resume=False) == (config, tmp_path / "given")
    assert prepare_run_dir(config, None, resume=False) == (config, tmp_path / "from-config")
    monkeypatch.chdir(tmp_path)
    _, default = prepare_run_dir(config.replace(out=None), None, resume=False)
    assert default.parent == Path("runs") and default.name.startswith("lenet5-mnist-")
    for name in ("best.ckpt", "last.ckpt"):
        held = tmp_path / name.split(".")[0]
        held.mkdir()
        (held / name).write_text("x")
        with pytest.raises(UserError, match=f"already holds a run \\({name}\\); pass --resume"):
            prepare_run_dir(config, held, resume=False)
    with pytest.raises(UserError, match="needs a config unless it resumes"):
        prepare_run_dir(None, tmp_path / "x", resume=False)
    # a folder an earlier attempt failed in (a summary, no checkpoint): a new run starts fresh
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "summary.json").write_text('{"status": "failed"}')
    plan = plan_run(config, failed, resume=False)
    assert (plan.config, plan.run_dir, plan.state, plan.summary) == (config, failed, "fresh", None)


def test_resume_refuses_a_machine_that_resolves_amp_auto_otherwise(tmp_path):
    """A run started with --amp auto in bf16 must not go on in fp32 on another machine; a
    precision asked by name is the user's, and a run that has not recorded one is not held."""
    from cnnbench.training.rundir import check_same_precision

    (tmp_path / "summary.json").write_text(json.dumps({"amp": "bf16"}))
    check_same_precision(tmp_path, "auto", "bf16")  # the same machine: fine
    check_same_precision(tmp_path, "bf16", "bf16")
    check_same_precision(tmp_path, "off", "off")  # asked by name: the user's choice
    with pytest.raises(UserError, match="trained in bf16 so far.*resolves --amp auto to off"):
        check_same_precision(tmp_path, "auto", "off")
    check_same_precision(tmp_path / "no-summary-yet", "auto", "off")
    (tmp_path / "summary.json").write_text(json.dumps({"amp": "auto"}))  # not resolved then
    check_same_precision(tmp_path, "auto", "off")


def test_a_default_run_directory_is_named_for_model_dataset_and_time(tiny_folder):
    from cnnbench.training.rundir import default_run_dir

    config = resolve_config(quick_options(tiny_folder))
    name = default_run_dir(config).name
    assert re.fullmatch(r"lenet5-folder-.*bars-\d{8}-\d{6}", name), name


def test_a_default_run_directory_never_reuses_a_taken_name(tmp_path, monkeypatch):
    """A second run started in the same second gets ``-2``, a third ``-3``; a dataset name
    that becomes underscores at its ends (a folder path) loses them."""
    import datetime as dt

    from cnnbench.config import TrainConfig
    from cnnbench.training import rundir

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 5, 19, 0, 0)

    monkeypatch.setattr(rundir._dt, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(model="lenet5", dataset="imagefolder:/data/My digits X/")
    names = []
    for _ in range(3):
        path = rundir.default_run_dir(config)
        assert path.parent == Path("runs")  # under ./runs, relative to where it was started
        path.mkdir(parents=True)
        names.append(path.name)
    assert names == ["lenet5-folder-_data_My_digits_X-20261205-190000",  # letters kept as typed
                     "lenet5-folder-_data_My_digits_X-20261205-190000-2",
                     "lenet5-folder-_data_My_digits_X-20261205-190000-3"]
