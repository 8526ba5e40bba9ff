"""cnnbench.training.record, the parts a run reaches only through the loop's callbacks (too deep
for the mutation run's close tests): what one logged step, an epoch, a checkpoint and a finished
run write, and how a run directory is opened (the failure paths: test_record_failures.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from cnnbench.training import record
from cnnbench.training.record import Recorder
from cnnbench.training.rundir import STEPS, read_jsonl


class Writer:
    """TensorBoard's SummaryWriter, as far as the recorder uses it."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_a_logged_step_is_a_line_of_train_steps_and_two_tensorboard_scalars(tmp_path):
    recorder = SimpleNamespace(run_dir=tmp_path, writer=Writer())
    Recorder.log_step(recorder, 10, 1280, 0.5, 0.01)
    Recorder.log_step(recorder, 20, 2560, 0.25, 0.02)
    assert read_jsonl(tmp_path / STEPS) == [
        {"step": 10, "images_seen": 1280, "train_loss": 0.5, "lr": 0.01},
        {"step": 20, "images_seen": 2560, "train_loss": 0.25, "lr": 0.02}]
    assert recorder.writer.scalars == [("train/loss_steps", 0.5, 10), ("train/lr_steps", 0.01, 10),
                                       ("train/loss_steps", 0.25, 20), ("train/lr_steps", 0.02, 20)]


def test_the_hyper_parameters_shown_are_the_recipe_and_the_seed():
    from cnnbench.config import NOT_RECIPE, TrainConfig

    config = TrainConfig(model="lenet5", lr=0.05, seed=7, out="runs/x", num_threads=2)
    shown = Recorder.recipe_options(SimpleNamespace(config=config))
    assert shown["lr"] == 0.05 and shown["model"] == "lenet5" and shown["seed"] == 7
    assert "seed" in NOT_RECIPE  # bookkeeping for resumes, but what a reader compares runs by
    assert not {"out", "num_threads"} & set(shown)


def test_a_new_run_starts_with_no_best_no_time_and_no_images_seen():
    from cnnbench.training.record import fresh_meta

    assert fresh_meta() == {"best_val_acc": None, "best_epoch": None, "epochs_since_best": 0,
                            "train_time_s": 0.0, "eval_time_s": 0.0, "images_seen": 0,
                            "stopped_early": False, "max_epoch_test_acc": None,
                            "max_epoch_test_epoch": None}
    assert fresh_meta() is not fresh_meta()  # each run counts in its own


def test_the_hparams_record_is_written_at_the_step_given(monkeypatch):
    from cnnbench.training import tracking

    written = []
    monkeypatch.setattr(tracking, "write_hparams", lambda *args: written.append(args))
    recorder = SimpleNamespace(writer="writer", recipe_options=lambda: {"lr": 0.1}, summary={"test_acc": 0.9})
    Recorder.hparams(recorder, 120)
    assert written == [("writer", {"lr": 0.1}, {"test_acc": 0.9}, 120)]


def test_the_header_says_what_the_run_is_about_to_do(tmp_path, monkeypatch):
    from cnnbench.training import record

    def header(*, epochs=1, amp="off", threads=1, location="/data/mnist", resume=False, asked=None):
        monkeypatch.setattr(record.torch, "get_num_threads", lambda: threads)
        recorder = SimpleNamespace(config=SimpleNamespace(epochs=epochs, model="lenet5", dataset="mnist",
                                                          amp=asked or amp),
                                   resume=resume, run_dir=tmp_path)
        t = SimpleNamespace(data=SimpleNamespace(split={"train": 54000, "val": 6000, "test": 10000}, location=location),
                            config=SimpleNamespace(amp=amp), params=61706, device=torch.device("cpu"))
        return Recorder.header(recorder, t)

    assert header() == (f"cnnbench: lenet5 (61,706 parameters) on mnist from /data/mnist (54,000 train, "
                        f"6,000 val, 10,000 test images); cpu, fp32, 1 thread; 1 epoch -> {tmp_path}")
    assert header(epochs=3, amp="bf16", threads=2, location=None).endswith(
        f"from ? (54,000 train, 6,000 val, 10,000 test images); cpu, bf16 autocast, 2 threads; 3 epochs -> {tmp_path}")
    assert header(epochs=3, resume=True).endswith(f"; resuming from last.ckpt, 3 epochs in all -> {tmp_path}")
    # --amp auto on a CPU with bf16 instructions: the measured verdict behind the precision
    monkeypatch.setattr(record, "native_bf16", lambda device: True)
    monkeypatch.setattr(record, "cpu_bf16_speedup", lambda: 0.857)
    assert ("; cpu, fp32 (--amp auto: bf16 trains 0.86x as fast as fp32 on this CPU, measured), 1 thread; "
            in header(asked="auto"))
    monkeypatch.setattr(record, "cpu_bf16_speedup", lambda: 1.6)
    assert "; cpu, bf16 autocast (--amp auto: bf16 trains 1.60x as fast" in header(amp="bf16", asked="auto")
    assert "; cpu, bf16 autocast, 1 thread" in header(amp="bf16")  # asked for: nothing measured
    monkeypatch.setattr(record, "native_bf16", lambda device: False)
    assert "; cpu, fp32, 1 thread" in header(asked="auto")  # no bf16 instructions: nothing to say
    (tmp_path / "summary.json").write_text(json.dumps({"epochs_completed": 2}))
    assert header(epochs=3, resume=True).endswith(f"; resuming after epoch 2 of 3 -> {tmp_path}")


def test_a_recorder_line_is_shown_only_when_there_is_something_to_say():
    shown = []
    recorder = SimpleNamespace(console=SimpleNamespace(line=shown.append))
    for text in ("epoch 1", None, ""):
        Recorder.line(recorder, text)
    assert shown == ["epoch 1"]


def test_a_runs_first_summary_says_what_it_is_and_that_nothing_is_measured_yet(tmp_path):
    import socket

    import torch

    from cnnbench.config import TrainConfig
    from cnnbench.devices import cpu_name, device_name
    from cnnbench.training.machine import git_commit, package_version
    from cnnbench.version import __version__

    echoed = dict(limit_train=8, limit_eval=4, recipe="fast", profile="quick", tta="mirror",
                  init="x.ckpt", freeze="backbone", unfreeze_at=2, head_lr=0.1, backbone_lr=0.01,
                  channels_last=True, compile=True, deterministic=True)
    config = TrainConfig(model="resnet18", dataset="cifar10", epochs=4, seed=3, sync_bn=True, **echoed)
    lines = []
    recorder = SimpleNamespace(config=config, run_dir=tmp_path / "r1", argv=["cnnbench", "train"],
                               console=SimpleNamespace(line=lines.append), resume=False)
    t = SimpleNamespace(spec=SimpleNamespace(channels=3, classes=("a", "b")), model=SimpleNamespace(stem="small"),
                        params=11, macs=None, data=SimpleNamespace(input_size=(32, 32), split={"train": 8},
                                                                    fingerprint=lambda: "fp"),
                        device=torch.device("cpu"), config=SimpleNamespace(amp="bf16"), dist=None,
                        threads_note=None, init_report=None)
    summary = Recorder._base_summary(recorder, t, "2026-12-06T04:00:00")
    not_yet = ("epochs_completed", "train_time_s", "eval_time_s", "train_images_per_s", "best_val_acc",
               "best_epoch", "test_acc", "test_loss", "per_class_test_acc", "confusion_matrix",
               "init_report", "finished_at")
    assert summary == {
        "name": "r1", "run_dir": str(tmp_path / "r1"), "model": "resnet18", "dataset": "cifar10",
        "stem": "small", "params": 11, "macs": None, "flops": None, "input_size": [3, 32, 32],
        "seed": 3, "device": "cpu", "device_name": device_name(torch.device("cpu")), "epochs": 4,
        **dict.fromkeys(not_yet), "epochs_completed": 0, "classes": ["a", "b"],
        "split": {"train": 8}, "data": "fp", "limited": True, "pretrained": False, "amp": "bf16",
        **echoed, "processes": 1, "dist_backend": None, "sync_bn": False,
        "torch_version": torch.__version__, "torchvision_version": package_version("torchvision"),
        "cnnbench_version": __version__, "git_commit": git_commit(), "command": "cnnbench train",
        "status": "running", "started_at": "2026-12-06T04:00:00", "hostname": socket.gethostname(),
        "cpu": cpu_name(), "num_threads": torch.get_num_threads(), "threads_note": None}
    t.macs, t.dist = 5, SimpleNamespace(world_size=2, backend="gloo")
    summary = Recorder._base_summary(recorder, t, "x")
    assert summary["flops"] == 10  # a multiply-add is 2 FLOPs
    assert (summary["processes"], summary["dist_backend"], summary["sync_bn"]) == (2, "gloo", True)
    assert lines == []
    # --init: the file the weights came from (as resolved, not as typed) and what they gave,
    # said once on the console
    t.init_report = SimpleNamespace(source="/runs/x.ckpt", to_dict=lambda: {"loaded": 7},
                                    text=lambda: "init: 7 tensors from x.ckpt")
    summary = Recorder._base_summary(recorder, t, "x")
    assert (summary["init"], summary["init_report"]) == ("/runs/x.ckpt", {"loaded": 7})
    assert lines == ["init: 7 tensors from x.ckpt"]
    # resumed (no weights loaded again): the report of the run's start is kept
    t.init_report, recorder.resume = None, True
    recorder.run_dir.mkdir()
    (recorder.run_dir / "summary.json").write_text(json.dumps({"init_report": {"loaded": 7}}))
    assert Recorder._base_summary(recorder, t, "x")["init_report"] == {"loaded": 7}
    assert lines == ["init: 7 tensors from x.ckpt"]


def test_the_finished_run_writes_its_test_files_summary_and_last_line(tmp_path):
    import torch
    from torch import nn

    from cnnbench.training.calibration import calibration_line
    from cnnbench.training.evaluation import evaluate

    g = torch.Generator().manual_seed(0)
    images, targets = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    test = evaluate(model, [(images.float() / 255, targets)], num_classes=3, return_predictions=True)
    scalars, hparams, ended, lines = [], [], [], []

    def recorder():
        return SimpleNamespace(main=True, dist=None, run_dir=tmp_path, summary={"status": "running"},
                               last_good_epoch=3, writer=SimpleNamespace(add_scalar=lambda *a: scalars.append(a)),
                               console=SimpleNamespace(line=lines.append), hparams=hparams.append,
                               tracker=SimpleNamespace(end=ended.append))

    t = SimpleNamespace(data=SimpleNamespace(test=(images, targets)), step=30)
    meta = {"train_time_s": 2.0, "eval_time_s": 0.5, "images_seen": 300, "best_val_acc": 0.8, "best_epoch": 2,
            "max_epoch_test_acc": 0.9, "max_epoch_test_epoch": 3, "stopped_early": False}

    def no_heat(rows, classes):
        raise RuntimeError("no layer")

    summary = Recorder.finish(recorder(), t, test, meta, "best", 0.25, explain=no_heat)
    assert json.loads((tmp_path / "test_predictions.json").read_text()) == {
        "predictions": test["predictions"].tolist(), "targets": targets.tolist(), "tested_weights": "best"}
    assert (tmp_path / "misclassified.pt").exists()
    assert scalars == [("test/acc", test["acc"], 30), ("test/loss", test["loss"], 30), ("test/ece", test["ece"], 30)]
    assert {k: summary[k] for k in ("epochs_completed", "train_time_s", "eval_time_s", "test_time_s",
                                    "train_images_per_s", "images_seen", "steps", "best_val_acc", "best_epoch",
                                    "max_epoch_test_acc", "max_epoch_test_epoch", "tested_weights",
                                    "stopped_early", "test_acc", "test_loss", "per_class_test_acc",
                                    "confusion_matrix", "test_ece", "status")} == {
        "epochs_completed": 3, "train_time_s": 2.0, "eval_time_s": 0.5, "test_time_s": 0.25,
        "train_images_per_s": 150.0, "images_seen": 300, "steps": 30, "best_val_acc": 0.8, "best_epoch": 2,
        "max_epoch_test_acc": 0.9, "max_epoch_test_epoch": 3, "tested_weights": "best", "stopped_early": False,
        "test_acc": test["acc"], "test_loss": test["loss"], "per_class_test_acc": test["per_class_acc"],
        "confusion_matrix": test["confusion_matrix"], "test_ece": test["ece"], "status": "finished"}
    assert summary["finished_at"] and json.loads((tmp_path / "summary.json").read_text()) == summary
    assert hparams == [30] and ended == [summary]
    assert lines == ["no Grad-CAM heat maps for the misclassified gallery (RuntimeError: no layer)",
                     calibration_line(test),
                     f"test accuracy {100 * test['acc']:.2f}% (loss {test['loss']:.4f}, best weights, epoch 2); "
                     f"training 2.0 s; run directory {tmp_path}"]

    # the last weights tested: the last epoch's number; no training time measured: no speed
    lines.clear()
    del meta["max_epoch_test_acc"], meta["max_epoch_test_epoch"]
    summary = Recorder.finish(recorder(), t, test, {**meta, "train_time_s": 0.0}, "last", 0.25)
    assert summary["train_images_per_s"] is None and summary["max_epoch_test_acc"] is None
    assert lines[-1].startswith(f"test accuracy {100 * test['acc']:.2f}% (loss {test['loss']:.4f}, last weights, epoch 3); training 0.0 s")
    assert lines[:-1] == [calibration_line(test)]  # no heat maps asked: none tried, nothing said

    # no validation split: the final weights, no epoch named; in a job, rank 0 sends its summary
    lines.clear()
    sent = []
    job = recorder()
    job.dist = SimpleNamespace(broadcast_object=sent.append)
    summary = Recorder.finish(job, t, test, {**meta, "best_epoch": None}, "final", 0.25)
    assert lines[-1].startswith(f"test accuracy {100 * test['acc']:.2f}% (loss {test['loss']:.4f}, final weights); ")
    assert sent == [summary]

    # another process of a job writes nothing and returns rank 0's summary
    other = tmp_path / "rank1"
    other.mkdir()
    rank1 = SimpleNamespace(main=False, run_dir=other, dist=SimpleNamespace(broadcast_object=lambda obj: {"from": "rank 0"}))
    assert Recorder.finish(rank1, t, test, meta, "best", 0.25) == {"from": "rank 0"}
    assert list(other.iterdir()) == []


def test_an_epoch_is_a_metrics_line_tensorboard_scalars_and_a_console_line(tmp_path):
    from cnnbench.training.rundir import read_jsonl

    scalars, lines, tracked = [], [], []
    recorder = SimpleNamespace(main=True, run_dir=tmp_path, config=SimpleNamespace(epochs=5),
                               tracker=SimpleNamespace(epoch=lambda record, step: tracked.append((record, step))),
                               writer=SimpleNamespace(add_scalar=lambda *a: scalars.append(a)),
                               console=SimpleNamespace(line=lines.append))
    record = {"epoch": 2, "train_loss": 0.51234, "train_acc": 0.875, "val_loss": 0.4, "val_acc": 0.9012,
              "lr": 0.0123, "lr_mean": 0.00456, "epoch_time_s": 3.25, "train_images_per_s": 1234.4}
    Recorder.log_epoch(recorder, record, 40)
    assert read_jsonl(tmp_path / "metrics.jsonl") == [record] and tracked == [(record, 40)]
    assert scalars == [("train/loss", 0.51234, 40), ("train/acc", 0.875, 40), ("val/loss", 0.4, 40),
                       ("val/acc", 0.9012, 40), ("train/lr", 0.0123, 40), ("train/images_per_s", 1234.4, 40),
                       ("train/epoch", 2, 40)]
    assert lines == ["epoch 2/5: train loss 0.5123 acc 87.50% | val loss 0.4000 acc 90.12% | lr peak 0.0123 "
                     "mean 0.00456 | 3.2 s, 1234 img/s"]

    # no validation split, the test set monitored each epoch (--monitor-test)
    scalars.clear(), lines.clear()
    Recorder.log_epoch(recorder, {**record, "val_loss": None, "val_acc": None, "epoch_test_loss": 0.7,
                                  "epoch_test_acc": 0.8}, 48)
    assert [s[0] for s in scalars] == ["train/loss", "train/acc", "test_monitor/loss", "test_monitor/acc",
                                       "train/lr", "train/images_per_s", "train/epoch"]
    assert scalars[2:4] == [("test_monitor/loss", 0.7, 48), ("test_monitor/acc", 0.8, 48)]
    assert lines == ["epoch 2/5: train loss 0.5123 acc 87.50% | test (monitor) acc 80.00% | lr peak 0.0123 "
                     "mean 0.00456 | 3.2 s, 1234 img/s"]

    # both: validation, then the monitored test accuracy
    lines.clear()
    Recorder.log_epoch(recorder, {**record, "epoch_test_loss": 0.7, "epoch_test_acc": 0.8}, 56)
    assert " | val loss 0.4000 acc 90.12% | test (monitor) acc 80.00% | lr peak" in lines[0]

    # another process of a job logs nothing
    Recorder.log_epoch(SimpleNamespace(main=False), record, 40)
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 3


def test_an_epochs_checkpoints_are_last_always_and_best_when_validation_improved():
    saved = []
    recorder = SimpleNamespace(config=SimpleNamespace(seed=7), last_good_epoch=1,
                               save=lambda name, weights, epoch, step, meta, **extra: saved.append(
                                   (name, weights, epoch, step, meta, extra)))
    t = SimpleNamespace(step=40, training_state=lambda: {"optimizer": "o"})
    Recorder.checkpoint(recorder, t, "w", 2, {"best_epoch": 2}, improved=True)
    # the loaders' state saved is the next epoch's: a function of (seed, epoch)
    assert saved == [("last.ckpt", "w", 2, 40, {"best_epoch": 2},
                      {"training": {"optimizer": "o", "loader": {"seed": 7, "epoch": 2}}}),
                     ("best.ckpt", "w", 2, 40, {"best_epoch": 2}, {})]
    assert recorder.last_good_epoch == 2
    saved.clear()
    Recorder.checkpoint(recorder, t, "w", 3, {"best_epoch": 2}, improved=False)
    assert [s[0] for s in saved] == ["last.ckpt"] and recorder.last_good_epoch == 3


def test_a_checkpoint_holds_what_eval_predict_and_resume_read(tmp_path):
    from cnnbench.config import TrainConfig
    from cnnbench.training.checkpoint import load_checkpoint

    config = TrainConfig(model="lenet5", dataset="mnist", epochs=3)
    recorder = SimpleNamespace(main=True, run_dir=tmp_path, config=config, summary={"data": "fp"},
                               input={"mean": [0.5], "size": [28, 28]}, amp="bf16")
    Recorder.save(recorder, "last.ckpt", {"w": 1}, 2, 40, {"best_epoch": 1}, training={"optimizer": {}})
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert (state.pop("format"), state.pop("version")) == ("cnnbench-checkpoint", 1)  # save_checkpoint's
    assert state == {"kind": "last", "config": config.to_dict(), "epoch": 2, "step": 40, "model": {"w": 1},
                     "meta": {"best_epoch": 1}, "data": "fp", "input": {"mean": [0.5], "size": [28, 28]},
                     "amp": "bf16", "training": {"optimizer": {}}}  # amp: what --amp auto became
    Recorder.save(SimpleNamespace(main=False, run_dir=tmp_path / "rank1"), "last.ckpt", {}, 2, 40, {})
    assert not (tmp_path / "rank1").exists()  # another process of a job writes no checkpoint


def test_tensorboard_opens_in_the_run_directory_and_a_resume_purges_the_later_steps(tmp_path, monkeypatch):
    import torch.utils.tensorboard

    opened, waited = [], []
    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", lambda **kw: opened.append(kw) or kw)
    monkeypatch.setattr(record, "open_after_earlier_event_files",
                        lambda run_dir, open_writer: waited.append(run_dir) or open_writer())
    fresh = SimpleNamespace(main=True, run_dir=tmp_path, resume=False, writer=None)
    Recorder.open_tensorboard(fresh, 0)
    resumed = SimpleNamespace(main=True, run_dir=tmp_path, resume=True, writer=None)
    Recorder.open_tensorboard(resumed, 40)  # the checkpoint's step stays, 41 on is dropped
    other = SimpleNamespace(main=False, run_dir=tmp_path, resume=True, writer=None)
    Recorder.open_tensorboard(other, 40)
    assert opened == [{"log_dir": str(tmp_path), "purge_step": None},
                      {"log_dir": str(tmp_path), "purge_step": 41}]
    assert fresh.writer == opened[0] and other.writer is None
    assert waited == [tmp_path]  # a resumed run's file sorts after the killed process's


def test_a_checkpoint_is_read_by_rank_0_and_sent_to_the_others(tmp_path):
    from cnnbench.training import checkpoint as ckpt

    ckpt.save_checkpoint(tmp_path / "last.ckpt", {"config": {}, "model": {}, "epoch": 2})
    sent = []
    alone = SimpleNamespace(main=True, run_dir=tmp_path, dist=None)
    assert Recorder.load(alone, "last.ckpt") == ckpt.load_checkpoint(tmp_path / "last.ckpt")
    assert Recorder.load(alone, "last.ckpt")["epoch"] == 2
    rank0 = SimpleNamespace(main=True, run_dir=tmp_path,
                            dist=SimpleNamespace(broadcast_object=lambda obj: sent.append(obj) or obj))
    assert Recorder.load(rank0, "last.ckpt")["epoch"] == 2 and sent[-1]["epoch"] == 2
    rank1 = SimpleNamespace(main=False, run_dir=tmp_path / "nothing-here",
                            dist=SimpleNamespace(broadcast_object=lambda obj: sent.append(obj) or {"epoch": 2}))
    assert Recorder.load(rank1, "last.ckpt") == {"epoch": 2} and sent[-1] is None  # it reads no file


def test_opening_a_run_keeps_its_input_record_and_clears_an_earlier_attempt_only_when_fresh(tmp_path, monkeypatch):
    """Recorder.open: the input record for the checkpoints, config.yaml written, the earlier
    attempt's logs dropped for a fresh run (kept on resume), the header and first summary, and an
    MLflow tracker only when ``track`` is set."""
    from cnnbench.config import TrainConfig
    from cnnbench.training import tracking
    from cnnbench.training.rundir import CONFIG, METRICS, TRAIN_LOG

    trackers = []
    monkeypatch.setattr(tracking, "MLflowTracker",
                        lambda track, run_dir, name, resume: trackers.append((track, name, resume))
                        or SimpleNamespace(params=lambda options: trackers.append(options)))
    preprocessing = {"mean": [0.5]}
    t = SimpleNamespace(data=SimpleNamespace(preprocessing=lambda: preprocessing), config=SimpleNamespace(amp="bf16"))

    def opened(run_dir, *, resume=False, main=True, track=None):
        run_dir.mkdir(exist_ok=True)
        (run_dir / METRICS).write_text('{"epoch": 1}\n')  # an earlier attempt's log
        kept, lines = [], []
        recorder = SimpleNamespace(
            main=main, run_dir=run_dir, resume=resume, tracker=None, summary=None,
            config=TrainConfig(model="lenet5", dataset="mnist", track=track),
            console=SimpleNamespace(keep_log=kept.append, line=lines.append),
            header=lambda t: "the header", recipe_options=lambda: {"lr": 0.1},
            _base_summary=lambda t, started: {"name": "run", "started": started})
        Recorder.open(recorder, t, "12:00")
        return recorder, kept, lines

    fresh, kept, lines = opened(tmp_path / "fresh")
    assert fresh.input is preprocessing and fresh.summary == {"name": "run", "started": "12:00"}
    assert fresh.amp == "bf16"  # the run's resolved precision, for its checkpoints
    assert kept == [tmp_path / "fresh" / TRAIN_LOG] and lines == ["the header"]
    assert (tmp_path / "fresh" / CONFIG).is_file() and not (tmp_path / "fresh" / METRICS).exists()
    assert fresh.tracker is None and trackers == []
    resumed, _, _ = opened(tmp_path / "resumed", resume=True)
    assert (tmp_path / "resumed" / METRICS).read_text() == '{"epoch": 1}\n'  # resume trims it later
    tracked, _, _ = opened(tmp_path / "tracked", resume=True, track="mlflow")
    assert tracked.tracker is not None and trackers == [("mlflow", "run", True), {"lr": 0.1}]
    # another process of a job keeps the input record (its checkpoints are not written) and no files
    other, kept, lines = opened(tmp_path / "rank1", main=False, track="mlflow")
    assert other.input is preprocessing and other.summary is None and kept == lines == []
    assert not (tmp_path / "rank1" / CONFIG).exists() and len(trackers) == 2
