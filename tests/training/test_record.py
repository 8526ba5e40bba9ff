"""cnnbench.training.record, the parts a run reaches only through the loop's callbacks (too deep
for the mutation run's close tests): what one logged step writes."""

from __future__ import annotations

from types import SimpleNamespace

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
