"""Resuming a run (``train_run(resume=True)``, ``--resume``): fresh, interrupted or finished;
the options, precision and data a resume must match; the best checkpoint it keeps or rewrites; a
run trained untested. (That a resumed run continues exactly: test_resume.py.)"""

from __future__ import annotations

import json
import re

import pytest
import torch

from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import checkpoint as ckpt
from cnnbench.training import train_run
from engine_fixtures import (_tiny_folder_files, quick_options, read_jsonl,  # noqa: F401
                             tiny_folder, train_tiny)


def test_a_resumed_run_does_not_load_its_init_weights_again(tiny_folder, tmp_path):
    """--init weights start a run; a resume continues from last.ckpt and needs the file no more."""
    _, first_dir = train_tiny(tiny_folder, "first", epochs=1)
    init = tmp_path / "init.ckpt"
    init.write_bytes((first_dir / "best.ckpt").read_bytes())
    summary, out = train_tiny(tiny_folder, "second", epochs=1, init=str(init))
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running"}))  # killed after epoch 1
    init.unlink()
    resumed = train_run(None, out_dir=out, resume=True, progress=False)
    assert resumed["status"] == summary["status"] and resumed["init"] == str(init)
    assert resumed["test_acc"] == summary["test_acc"]


def test_a_run_started_with_amp_auto_resumes_only_where_auto_means_the_same(tiny_folder):
    from cnnbench.devices import resolve_amp

    summary, out = train_tiny(tiny_folder, epochs=1, amp="auto")
    here = summary["amp"]  # what --amp auto is on this machine: resolved before training
    assert here == resolve_amp("auto", torch.device("cpu")) and here in ("off", "bf16")
    other = "off" if here != "off" else "bf16"
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running", "amp": other}))
    with pytest.raises(UserError, match=rf"^{re.escape(str(out))} trained in {other} so far .*resolves "
                                        rf"--amp auto to {here}; resume it on a machine like the first"):
        train_run(None, out_dir=out, resume=True, progress=False)


def test_existing_run_needs_resume_and_resume_needs_a_run(tiny_folder, tmp_path):
    train_tiny(tiny_folder, "done", epochs=1)
    with pytest.raises(UserError, match="already holds a run.*--resume"):
        train_tiny(tiny_folder, "done", epochs=1)
    with pytest.raises(UserError, match="does not exist"):
        train_run(None, out_dir=tmp_path / "empty", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no run to resume"):
        train_run(None, out_dir=tmp_path / "empty", resume=True)
    config = resolve_config(quick_options(tiny_folder, epochs=1))
    finished = train_run(config, out_dir=tiny_folder.out / "done", resume=True, progress=False)
    assert finished["status"] == "finished"  # a finished run is returned, not retrained
    with pytest.raises(UserError, match="options differ: lr"):
        train_run(config.replace(lr=0.5), out_dir=tiny_folder.out / "done", resume=True)


def test_resume_or_finished_is_decided_in_one_place(tiny_folder):
    """run_state: fresh (no directory; a run that never completed an epoch), interrupted
    (a last.ckpt to continue from), finished (its summary says so); train_run with resume
    returns a finished run's summary without training."""
    from cnnbench.training.rundir import run_state

    out = tiny_folder.out / "run"
    assert run_state(out) == ("fresh", None)
    summary, _ = train_tiny(tiny_folder, epochs=1)
    assert run_state(out) == ("finished", summary)
    data = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**data, "status": "running"}))
    assert run_state(out)[0] == "interrupted"
    (out / "last.ckpt").unlink()
    assert run_state(out)[0] == "fresh"
    (out / "summary.json").write_text(json.dumps(data))
    assert train_run(None, out_dir=out, resume=True, progress=False) == summary


def test_resume_refuses_a_dataset_that_changed_since_the_checkpoint(tiny_folder, tmp_path, monkeypatch):
    """The checkpoint's data fingerprint is checked on resume: a test set that changed under an
    interrupted run is refused in one line, not trained on in silence."""
    import shutil

    from cnnbench.training.rundir import run_state

    data = tmp_path / "data"
    shutil.copytree(tiny_folder.root / "bars", data / "bars")
    options = quick_options(tiny_folder, dataset=f"imagefolder:{data / 'bars'}", epochs=2)
    out = tmp_path / "interrupted"
    train_run(resolve_config(options), out_dir=out, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    assert run_state(out)[0] == "interrupted"
    victim = sorted((data / "bars" / "test").rglob("*.png"))[0]
    victim.write_bytes(sorted((data / "bars" / "train").rglob("*.png"))[0].read_bytes())
    with pytest.raises(UserError, match="test") as err:
        train_run(None, out_dir=out, resume=True, progress=False)
    assert str(out / "last.ckpt") in str(err.value)  # names the checkpoint it compared with


def test_a_run_trained_untested_is_tested_when_resumed_as_if_never_stopped(tiny_folder):
    """A search's trial trains without touching the test set (status `trained`); resuming it
    tests it, with the figures of a run that tested at once."""
    seen = []
    config = resolve_config(quick_options(tiny_folder, epochs=2))
    untested = train_run(config, out_dir=tiny_folder.out / "untested", progress=False, test=False,
                         on_epoch=lambda m: seen.append(m["epoch"]) and False)
    out = tiny_folder.out / "untested"
    assert untested["status"] == "trained" and untested["test_acc"] is None and seen == [1, 2]
    assert untested["best_val_acc"] is not None and untested["epochs_completed"] == 2
    # the summary of what training measured, on disk as returned
    assert json.loads((out / "summary.json").read_text()) == untested
    metrics = read_jsonl(out / "metrics.jsonl")
    best = max(metrics, key=lambda m: (m["val_acc"], -m["epoch"]))
    assert (untested["best_val_acc"], untested["best_epoch"]) == (best["val_acc"], best["epoch"])
    assert untested["images_seen"] == metrics[-1]["images_seen"] == 2 * 120  # 160 - 25% val
    assert untested["steps"] == 2 * 8 and untested["stopped_early"] is False  # 120 in batches of 16
    assert untested["train_images_per_s"] == pytest.approx(240 / untested["train_time_s"])
    assert untested["finished_at"] >= untested["started_at"]
    last_line = (out / "train.log").read_text().splitlines()[-1]  # the console's, time-stamped
    assert re.sub(r"^\[[^]]*\] ", "", last_line) == (
        f"trained after epoch 2, not tested (best validation accuracy "
        f"{100 * best['val_acc']:.2f}%, epoch {best['epoch']}); run directory {out}")
    assert not (out / "test_predictions.json").exists() and not (out / "misclassified.pt").exists()
    tested = train_run(None, out_dir=out, resume=True, progress=False)
    straight, _ = train_tiny(tiny_folder, name="straight", epochs=2)
    assert tested["status"] == "finished"
    for key in ("test_acc", "test_loss", "best_val_acc", "best_epoch", "confusion_matrix"):
        assert tested[key] == straight[key], key


def test_killed_between_last_and_best_ckpt_the_best_is_rewritten_on_resume(tiny_folder):
    """A kill after last.ckpt but before best.ckpt of an improving epoch leaves an older
    best.ckpt; resuming writes the best again from last.ckpt, so the run tests the right one."""
    import shutil

    out = tiny_folder.out / "cut"
    config = resolve_config(quick_options(tiny_folder, epochs=2, lr=3e-3))

    def stop(metrics):
        if metrics["epoch"] == 1:
            shutil.copy(out / "best.ckpt", tiny_folder.out / "best-epoch1.ckpt")
            return False
        raise KeyboardInterrupt  # after epoch 2's checkpoints

    with pytest.raises(KeyboardInterrupt):
        train_run(config, out_dir=out, progress=False, on_epoch=stop)
    assert ckpt.load_checkpoint(out / "last.ckpt")["meta"]["best_epoch"] == 2  # it improved
    shutil.copy(tiny_folder.out / "best-epoch1.ckpt", out / "best.ckpt")  # the older best
    summary = train_run(None, out_dir=out, resume=True, progress=False)
    straight, _ = train_tiny(tiny_folder, name="straight", epochs=2, lr=3e-3)
    best, last = ckpt.load_checkpoint(out / "best.ckpt"), ckpt.load_checkpoint(out / "last.ckpt")
    assert summary["best_epoch"] == 2 and (best["epoch"], best["step"]) == (2, last["step"])
    assert summary["test_acc"] == straight["test_acc"]


def test_a_best_ckpt_given_as_last_cannot_be_resumed(tiny_folder):
    import shutil

    summary, out = train_tiny(tiny_folder, epochs=1)
    shutil.copy(out / "best.ckpt", out / "last.ckpt")  # weights only, no training state
    (out / "summary.json").unlink()
    with pytest.raises(UserError, match="last.ckpt holds no training state; it cannot be resumed"):
        train_run(None, out_dir=out, resume=True, progress=False)


def test_resume_keeps_an_earlier_best_ckpt(tiny_folder, monkeypatch):
    """Interrupted when the best epoch was an earlier one, the resumed run keeps that best.ckpt
    (only a best epoch equal to the last checkpoint's is written again)."""
    import cnnbench.training.setup as setup

    accuracies = iter([0.9, 0.5, 0.4, 0.3])  # epoch 1 is the best, whatever the weights
    real = setup.Training.evaluate

    def evaluate(self, split="val"):
        result = real(self, split)
        return {**result, "acc": next(accuracies)} if split == "val" else result

    monkeypatch.setattr(setup.Training, "evaluate", evaluate)
    out = tiny_folder.out / "earlier"
    config = resolve_config(quick_options(tiny_folder, epochs=3))

    def stop(metrics):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, out_dir=out, progress=False, on_epoch=stop)
    assert ckpt.load_checkpoint(out / "best.ckpt")["epoch"] == 1
    summary = train_run(None, out_dir=out, resume=True, progress=False)
    assert summary["best_epoch"] == 1 and ckpt.load_checkpoint(out / "best.ckpt")["epoch"] == 1
