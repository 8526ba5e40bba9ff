"""cnnbench.training.record when a run does not end well: stopped before its test, interrupted,
failed (once, in one line, only rank 0 writing in a job), a non-finite loss, and a resume it
refuses or trims, and what a tracker receives of a failed run (too deep in the loop's callbacks
for the mutation run's close tests)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cnnbench.errors import UserError
from cnnbench.training.record import Recorder


def test_a_run_ended_before_its_test_writes_what_training_measured(tmp_path):
    """Recorder.finish_untested: the summary (no test figure), TensorBoard's hparams at the last
    step, the console line with the best validation accuracy, the tracker's end."""

    lines, hparams, ended = [], [], []
    recorder = SimpleNamespace(
        summary={"model": "lenet5"}, last_good_epoch=3, run_dir=tmp_path,
        hparams=hparams.append, console=SimpleNamespace(line=lines.append),
        tracker=SimpleNamespace(end=ended.append))
    meta = {"train_time_s": 4.0, "eval_time_s": 0.5, "images_seen": 600, "best_val_acc": 0.75,
            "best_epoch": 2, "stopped_early": False}
    summary = Recorder.finish_untested(recorder, SimpleNamespace(step=30), meta, "trained")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert {k: summary[k] for k in ("epochs_completed", "train_time_s", "eval_time_s",
                                    "train_images_per_s", "images_seen", "steps", "best_val_acc",
                                    "best_epoch", "stopped_early", "status")} == {
        "epochs_completed": 3, "train_time_s": 4.0, "eval_time_s": 0.5, "train_images_per_s": 150.0,
        "images_seen": 600, "steps": 30, "best_val_acc": 0.75, "best_epoch": 2,
        "stopped_early": False, "status": "trained"}
    assert summary["model"] == "lenet5" and summary["finished_at"]
    assert hparams == [30] and ended == [summary]
    assert lines == ["trained after epoch 3, not tested (best validation accuracy 75.00%, epoch 2)"
                     f"; run directory {tmp_path}"]
    # no validation split, no measured time: no accuracy in the line, no speed
    lines.clear()
    meta.update(train_time_s=0.0, best_val_acc=None, best_epoch=None)
    summary = Recorder.finish_untested(recorder, SimpleNamespace(step=30), meta, "pruned")
    assert summary["train_images_per_s"] is None
    assert lines == [f"pruned after epoch 3, not tested; run directory {tmp_path}"]


def test_an_interrupted_run_says_where_it_stands_and_how_resume_continues(tmp_path):
    from cnnbench.training.record import interrupt_cause

    assert interrupt_cause(KeyboardInterrupt()) == "interrupted"  # Ctrl-C
    assert interrupt_cause(KeyboardInterrupt("stopped by SIGTERM")) == "terminated (SIGTERM)"
    resume = f"`cnnbench train --resume {tmp_path}`"
    recorder = SimpleNamespace(run_dir=tmp_path, last_good_epoch=0,
                               config=SimpleNamespace(epochs=5))
    assert Recorder.interrupted(recorder, KeyboardInterrupt()) == (
        f"interrupted in epoch 1, before its end (no checkpoint yet); {resume} starts the run "
        f"again from epoch 1")
    (tmp_path / "last.ckpt").write_bytes(b"")
    recorder.last_good_epoch = 2
    assert Recorder.interrupted(recorder, KeyboardInterrupt("SIGTERM")) == (
        f"terminated (SIGTERM) in epoch 3; {resume} continues from the end of epoch 2 "
        f"(last.ckpt), starting epoch 3 again")
    recorder.last_good_epoch = 5
    assert Recorder.interrupted(recorder, KeyboardInterrupt()) == (
        f"interrupted after the last epoch; {resume} tests the trained weights")


def _failing_recorder(run_dir, *, rank=0, processes=1, last_good_epoch=0):
    lines, ended = [], []
    recorder = SimpleNamespace(
        console=SimpleNamespace(end_epoch=lambda: None, log_file=run_dir / "train.log",
                                line=lambda text, echo=True: lines.append((text, echo))),
        run_dir=run_dir, last_good_epoch=last_good_epoch, main=rank == 0,
        dist=SimpleNamespace(rank=rank) if processes > 1 else None,
        summary={"model": "lenet5", "status": "running"} if rank == 0 else {},
        tracker=SimpleNamespace(end=lambda summary, status: ended.append(status)),
        config=SimpleNamespace(epochs=5))
    recorder.interrupted = lambda exc: Recorder.interrupted(recorder, exc)
    return recorder, lines, ended


def test_a_failed_run_records_its_error_once_and_says_it_last(tmp_path):
    # a crash: its traceback in error.txt, the summary says failed, the log's last line the error
    recorder, lines, ended = _failing_recorder(tmp_path, last_good_epoch=2)
    try:
        raise RuntimeError("out of memory")
    except RuntimeError as exc:
        assert Recorder.fail(recorder, exc) == str(tmp_path / "error.txt")
    text = (tmp_path / "error.txt").read_text()
    assert text.startswith("Traceback") and text.strip().endswith("RuntimeError: out of memory")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {k: summary[k] for k in ("status", "error", "epochs_completed", "model")} == {
        "status": "failed", "error": "RuntimeError: out of memory", "epochs_completed": 2,
        "model": "lenet5"}
    assert lines == [("RuntimeError: out of memory", False)] and ended == ["FAILED"]

    # a mistake: one line, no traceback file to point at
    recorder, lines, ended = _failing_recorder(tmp_path)
    assert Recorder.fail(recorder, UserError("batch size 0")) is None
    assert (tmp_path / "error.txt").read_text() == "batch size 0\n"
    assert lines == [("batch size 0", False)]

    # Ctrl-C: where the run stands, said on the console by the command line (the exception's text)
    recorder, lines, ended = _failing_recorder(tmp_path)
    interrupt = KeyboardInterrupt()
    assert Recorder.fail(recorder, interrupt) is None and ended == ["KILLED"]
    assert interrupt.args[0].startswith("interrupted in epoch 1, before its end")
    assert lines == [(interrupt.args[0], False)]


def test_a_non_finite_loss_names_the_last_good_checkpoint(tmp_path):
    from cnnbench.training.record import NonFiniteLoss

    for epoch, where in ((3, f"the last good checkpoint is {tmp_path / 'last.ckpt'} (epoch 3)"),
                         (0, "no epoch completed")):
        recorder, _, _ = _failing_recorder(tmp_path, last_good_epoch=epoch)
        exc = NonFiniteLoss("loss is nan at step 12")
        Recorder.fail(recorder, exc)
        assert str(exc) == f"loss is nan at step 12; run stopped, {where}"


def test_in_a_job_only_rank_0_records_and_a_lost_peer_is_no_traceback(tmp_path):
    # another process's crash: its own traceback file, nothing else
    recorder, lines, ended = _failing_recorder(tmp_path, rank=1, processes=2)
    assert Recorder.fail(recorder, RuntimeError("boom")) == str(tmp_path / "error-rank1.txt")
    assert "RuntimeError: boom" in (tmp_path / "error-rank1.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error-rank1.txt"] and lines == []
    # its mistake (every process makes it): said by rank 0 only
    assert Recorder.fail(recorder, UserError("odd batch")) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error-rank1.txt"]
    # rank 0 when another process died: how to go on, not a traceback of the broken connection
    recorder, lines, _ = _failing_recorder(tmp_path, rank=0, processes=2)
    assert Recorder.fail(recorder, RuntimeError("Connection closed by peer [127.0.0.1]")) is None
    assert (tmp_path / "error.txt").read_text() == (
        "stopped: another process of the job ended; continue with --resume\n")
    # the same words in a one-process run are an error of its own
    recorder, _, _ = _failing_recorder(tmp_path)
    assert Recorder.fail(recorder, RuntimeError("Connection closed by peer")) == str(tmp_path / "error.txt")
    # a run that failed before its directory existed records nothing
    recorder, lines, _ = _failing_recorder(tmp_path / "never")
    assert Recorder.fail(recorder, RuntimeError("x")) is None and not (tmp_path / "never").exists()



def test_a_checkpoint_that_cannot_be_resumed_says_why_in_one_line(tmp_path):
    last = tmp_path / "last.ckpt"

    def recorder(state):
        return SimpleNamespace(run_dir=tmp_path, load=lambda name: state, main=True,
                               summary={"data": None})

    for state in ({"kind": "best", "training": {"optimizer": {}}},  # the best weights only
                  {"kind": "last", "training": None}):  # written without its training state
        with pytest.raises(UserError, match=f"^{last} holds no training state; it cannot be resumed$"):
            Recorder.restore(recorder(state), None)

    def refusing(error):
        def load_training_state(weights, saved):
            raise error
        return SimpleNamespace(load_training_state=load_training_state)

    state = {"kind": "last", "training": {"optimizer": {}}, "model": {}}
    for error, said in ((RuntimeError("size mismatch for fc.weight\nmore detail"), "size mismatch for fc.weight"),
                        (KeyError(), "KeyError")):
        with pytest.raises(UserError) as info:
            Recorder.restore(recorder(state), refusing(error))
        assert str(info.value) == (f"{last} does not fit this run's model/optimizer ({said}); it "
                                   f"cannot be resumed")


def test_a_resume_drops_the_logs_written_after_the_checkpoint(tmp_path):
    """The epochs and steps logged after last.ckpt (by the run that was killed) are dropped, so
    the resumed run's logs read as one uninterrupted run's."""
    from cnnbench.training.checkpoint import capture_rng_state

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3)))
    (tmp_path / "train_steps.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (10, 20, 25)))
    state = {"kind": "last", "model": {}, "epoch": 2, "step": 20, "data": None,
             "meta": {"images_seen": 640, "best_epoch": 1},
             "training": {"rng": capture_rng_state(), "loader": {"epoch": 2}}}
    lines, loaded = [], []
    recorder = SimpleNamespace(run_dir=tmp_path, load=lambda name: state, main=True, summary={"data": None},
                               console=SimpleNamespace(line=lines.append))
    loader = SimpleNamespace(load_state_dict=loaded.append)
    t = SimpleNamespace(load_training_state=lambda weights, saved: None, rng_state=lambda saved: saved["rng"],
                        train_loaders={"train": loader})
    assert Recorder.restore(recorder, t) == (2, state["meta"])
    assert (t.step, t.images_seen, recorder.last_good_epoch) == (20, 640, 2)
    assert [r["epoch"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    assert [r["step"] for r in map(json.loads, (tmp_path / "train_steps.jsonl").read_text().splitlines())] == [10, 20]
    assert loaded == [{"epoch": 2}] and lines == [f"resuming {tmp_path} after epoch 2 (step 20)"]


def test_the_tracker_gets_the_failed_summary_and_cannot_hide_the_runs_error(tmp_path):
    recorder, _, _ = _failing_recorder(tmp_path)
    seen = []
    recorder.tracker = SimpleNamespace(end=lambda summary, status: seen.append((dict(summary), status)))
    Recorder.fail(recorder, KeyboardInterrupt("stopped by SIGTERM"))
    [(summary, status)] = seen
    assert status == "KILLED" and summary["status"] == "failed"
    assert summary["error"].startswith("terminated (SIGTERM) in epoch 1, before its end")

    def unreachable(summary, status):
        raise ConnectionError("tracking server gone")

    recorder.tracker = SimpleNamespace(end=unreachable)
    assert Recorder.fail(recorder, RuntimeError("boom")) == str(tmp_path / "error.txt")
    assert (tmp_path / "error.txt").read_text().strip().endswith("RuntimeError: boom")
