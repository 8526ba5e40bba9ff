"""Kill-and-resume equivalence: a run SIGKILLed in the middle of an epoch and resumed ends with
exactly the weights, optimizer state and metrics of the same run left alone (CPU, deterministic).

The run uses dropout (global torch RNG), augmentation (loader streams) and the weight average
(its state is checkpointed), and the kill lands inside the windows of the per-epoch schedules
(whitening bias trained for 2 epochs, progressive resizing for 2), so every kind of state that
resume must restore is exercised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from cnnbench.cli import main
from cnnbench.training import checkpoint as ckpt
from engine_fixtures import (_tiny_folder_files, cli_command, cli_env, read_jsonl,  # noqa: F401
                             tensorboard_scalars, tiny_folder)

STEPS_PER_EPOCH = 75  # 300 training images (400, val 0.25), batch 4


def _train_args(tiny, out) -> list[str]:
    return ["train", "--dataset", tiny.long_dataset, "--epochs", "3", "--batch-size", "4",
            "--val-split", "0.25", "--device", "cpu", "--deterministic", "--log-every", "1",
            "--dropout", "0.3", "--augment", "flip+translate", "--ema", "0.9",
            "--optimizer", "sgd", "--lr", "0.02", "--nesterov", "--scheduler", "cosine",
            "--warmup-epochs", "0.5", "--seed", "7", "--whiten-init", "--whiten-bias-epochs", "2",
            "--lowres-size", "8", "--lowres-epochs", "2", "--num-threads", "1", "--quiet",
            "--out", str(out)]


def _kill_mid_epoch_two(tiny, out) -> None:
    proc = subprocess.Popen(cli_command(*_train_args(tiny, out)), env=cli_env(tiny),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    steps = out / "train_steps.jsonl"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if steps.exists():
                lines = steps.read_text().splitlines()
                if len(lines) >= STEPS_PER_EPOCH + 10:  # well inside epoch 2
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    last = ckpt.load_checkpoint(out / "last.ckpt")
    assert last["epoch"] == 1, "the kill must land in epoch 2"
    assert len(read_jsonl(steps)) > STEPS_PER_EPOCH  # epoch 2 had started
    assert not (out / "summary.json").exists()


@pytest.mark.slow(seconds=4)  # started first, so that two workers end together
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tiny_folder):
    # the run left alone and the resumed one train in this process (one thread, as the
    # killed process): only the kill needs a process of its own
    alone, killed = tiny_folder.out / "alone", tiny_folder.out / "killed"
    assert main(_train_args(tiny_folder, alone)) == 0
    _kill_mid_epoch_two(tiny_folder, killed)
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0

    a, b = ckpt.load_checkpoint(alone / "last.ckpt"), ckpt.load_checkpoint(killed / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 3 * STEPS_PER_EPOCH
    for key in a["model"]:  # the averaged (evaluated) weights
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["training"]["model"]:  # the live training weights
        assert torch.equal(a["training"]["model"][key], b["training"]["model"][key]), key
    for key, value in a["training"]["ema"].items():
        assert torch.equal(value, b["training"]["ema"][key]), key
    opt_a, opt_b = a["training"]["optimizer"]["state"], b["training"]["optimizer"]["state"]
    for index in opt_a:
        for name, value in opt_a[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[index][name]))

    volatile = {"epoch_time_s", "train_images_per_s"}
    metrics_a, metrics_b = read_jsonl(alone / "metrics.jsonl"), read_jsonl(killed / "metrics.jsonl")
    assert [m["epoch"] for m in metrics_b] == [1, 2, 3]
    assert ([{k: v for k, v in m.items() if k not in volatile} for m in metrics_a]
            == [{k: v for k, v in m.items() if k not in volatile} for m in metrics_b])
    assert read_jsonl(alone / "train_steps.jsonl") == read_jsonl(killed / "train_steps.jsonl")

    # TensorBoard holds every epoch once, as the run left alone does (the resumed writer
    # drops only what the killed process logged after its last checkpoint)
    boards_a, boards_b = tensorboard_scalars(alone), tensorboard_scalars(killed)
    assert [s for s, _ in boards_b["val/acc"]] == [STEPS_PER_EPOCH * e for e in (1, 2, 3)]
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "train/lr", "test/acc"):
        assert boards_a[tag] == boards_b[tag], tag
    assert [s for s, _ in boards_b["train/loss_steps"]] == list(range(1, 3 * STEPS_PER_EPOCH + 1))

    summary_a = json.loads((alone / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    for key in ("test_acc", "test_loss", "best_val_acc", "best_epoch", "confusion_matrix",
                "epochs_completed", "status"):
        assert summary_a[key] == summary_b[key], key
