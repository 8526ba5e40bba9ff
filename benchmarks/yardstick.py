"""A yardstick timed in the same run as a benchmark's result: one epoch of airbench94's network
and batch on this machine now. This CPU's speed drifts by ~1.5x from day to day; a time divided
by this one much less (issue #33).

What is timed: ``model_throughput``'s bare training loop (:class:`model_throughput.Plain`: one
pre-made random batch, SGD with momentum, fp32) over cnnbench's ``fastnet`` at its default
widths, airbench94's (64, 256, 256; Jordan 2024, arXiv 2404.00498), on 3x32x32 inputs in
channels_last, batches of 1,024. ``steps`` are timed after one untimed warm-up step (default:
an epoch's worth, 49) and scaled to the 50,000 CIFAR-10 training images. It is cnnbench's
rendition of airbench94's training step, not airbench94's own script (whose data loading, fp16
weights and Lookahead it leaves out): a yardstick for this machine's speed, not a time
airbench94 itself was measured at.

``amp="bf16"`` times the same loop under bf16 autocast: a VM's bf16 speed need not drift with
its fp32 speed (on 2026-12-07 this project's AMD EPYC VM trained the wider CIFAR network in bf16
at half its 2026-11-30 speed, with the code of either day), so a benchmark whose runs trained in
bf16 also states its time against the bf16 yardstick.
"""

from __future__ import annotations

import math

import torch

from model_throughput import Plain, make_model

AIRBENCH_BATCH = 1024
AIRBENCH_EPOCHS = 9.9             # airbench94 trains 9.9 epochs
CIFAR_TRAIN_IMAGES = 50_000
SHAPE = (3, 32, 32)


def airbench_epoch(threads: int, steps: int | None = None, batch: int = AIRBENCH_BATCH,
                   amp: str = "off") -> dict:
    """The seconds one epoch of airbench94's network and batch takes here now, in fp32
    (``amp="off"``) or under bf16 autocast (``amp="bf16"``) (module doc)."""
    if amp not in ("off", "bf16"):
        raise SystemExit(f"the yardstick runs in fp32 (amp 'off') or bf16 (amp 'bf16'), got {amp!r}")
    torch.set_num_threads(threads)
    steps = math.ceil(CIFAR_TRAIN_IMAGES / batch) if steps is None else steps
    if steps < 1:
        raise SystemExit(f"the yardstick needs at least one step, got {steps}")
    cpu = torch.device("cpu")
    model = make_model("fastnet", SHAPE, cpu, channels_last=True)  # widths (64, 256, 256)
    run = Plain(model, SHAPE, batch, cpu, channels_last=True, amp=amp, compiled=False)
    run.steps(1)  # warm-up: oneDNN picks its kernels
    seconds = run.steps(steps)
    images = steps * batch
    amp = run.amp  # the precision the loop ran in, as recorded
    epoch_s = seconds * CIFAR_TRAIN_IMAGES / images
    return {"workload": f"fastnet widths [64, 256, 256] (airbench94's network), batch {batch}, 3x32x32, {'fp32' if amp == 'off' else 'bf16 autocast'}, channels_last, "
                        f"SGD with momentum, {threads} threads",
            "batch_size": batch, "amp": amp, "steps_timed": steps, "images_timed": images,
            "seconds_timed": seconds, "epoch_s": epoch_s,
            "scaled_to_epoch": images != CIFAR_TRAIN_IMAGES,
            "airbench94_run_s": epoch_s * AIRBENCH_EPOCHS}


def in_yardstick(seconds: float | None, yardstick: dict | None) -> float | None:
    """``seconds`` as a fraction of a whole airbench94-length run (9.9 of the yardstick's
    epochs) measured in the same benchmark run: the figure that survives the machine's drift."""
    if seconds is None or not yardstick:
        return None
    return seconds / yardstick["airbench94_run_s"]
