"""Predictions for image files: ``cnnbench predict``'s work, as a function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnbench.errors import UserError
from cnnbench.inference.images import expand_inputs, open_image
from cnnbench.inference.model import load_trained_model


def predict_files(checkpoint: str | Path, inputs: list[str | Path], *, topk: int = 3,
                  device: str = "cpu", batch_size: int = 64,
                  digit_style: bool = True) -> dict[str, Any]:
    """The ``topk`` classes of every image in ``inputs`` (files; a folder means the images in
    it and below) by the model of ``checkpoint`` (a file or a run directory). Every image is
    read and prepared first, so a bad one ends the call (one-line :class:`UserError`) before
    any prediction; then the images go through the model in batches of ``batch_size``.

    Returns ``model, dataset, checkpoint, epoch, tta, description, preprocessing`` (the
    checkpoint's input record) and ``predictions``: per image ``file, size ([W, H]), mode,
    notes`` (what was done to it) and ``top`` (``class, index, prob``, most likely first)."""
    if topk < 1:
        raise UserError(f"--topk must be >= 1, got {topk}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    trained = load_trained_model(checkpoint, device)
    files = expand_inputs(inputs)
    pixels, records = [], []
    for file in files:
        image = open_image(file)
        prepared, notes = trained.prepare(image, digit_style=digit_style)
        pixels.append(prepared)
        records.append({"file": str(file), "size": list(image.size), "mode": image.mode,
                        "notes": notes})
    probs = trained.predict(torch.stack(pixels), batch_size=batch_size)
    for record, top in zip(records, trained.top(probs, topk)):
        record["top"] = top
    return {"model": trained.config.model, "dataset": trained.config.dataset,
            "checkpoint": str(trained.path), "epoch": trained.epoch, "tta": trained.config.tta,
            "description": trained.describe(), "preprocessing": trained.preprocessing.to_dict(),
            "predictions": records}
