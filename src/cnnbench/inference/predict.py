"""Predictions for image files: ``cnnbench predict``'s work, as a function.

An image unlike the ones the model was trained on still gets an answer (a softmax always sums
to one), so each prediction is also judged against the model's own held-out images: the
model's top probability on up to :data:`REFERENCE_IMAGES` images of its dataset that it did not
train on (the run's validation split, else the test split; never used to choose anything) gives
a reference, and an image whose top probability is lower than on
``100 - UNFAMILIAR_PERCENTILE`` % of them is flagged ``unfamiliar`` (the maximum-softmax
baseline of Hendrycks and Gimpel, 2017). Without the dataset there is no reference and no flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnbench.errors import UserError
from cnnbench.inference.images import expand_inputs, open_image
from cnnbench.inference.model import TrainedModel, load_trained_model

REFERENCE_IMAGES = 1000
UNFAMILIAR_PERCENTILE = 1.0


def confidence_reference(trained: TrainedModel, batch_size: int = 256) -> dict[str, Any] | None:
    """The top probability below which an image counts as unlike the training data: the
    :data:`UNFAMILIAR_PERCENTILE` percentile of the model's top probabilities on held-out
    images of its dataset (``threshold``, ``images``, ``split``), or ``None`` when the dataset
    cannot be found (nothing is downloaded)."""
    from cnnbench import data

    config = trained.config
    try:
        ds = data.load_dataset(config.dataset, data_dir=config.data_dir, download=False)
    except UserError:
        return None
    if config.val_split > 0:
        _, held_out = data.split_indices(len(ds.train_y), config.val_split, config.split_seed)
        images, split = ds.train_x[held_out], "validation"
    else:
        images, split = ds.test_x, "test"
    if len(images) == 0:
        return None
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    images = images[pick[:REFERENCE_IMAGES]]
    top = trained.predict(images, batch_size=batch_size).max(1).values
    threshold = float(torch.quantile(top.double(), UNFAMILIAR_PERCENTILE / 100))
    return {"threshold": threshold, "images": len(images), "split": split,
            "percentile": UNFAMILIAR_PERCENTILE}


def predict_files(checkpoint: str | Path, inputs: list[str | Path], *, topk: int = 3,
                  device: str = "cpu", batch_size: int = 64,
                  digit_style: bool = True, explain: str | Path | None = None) -> dict[str, Any]:
    """The ``topk`` classes of every image in ``inputs`` (files; a folder means the images in
    it and below) by the model of ``checkpoint`` (a file or a run directory). An image that
    cannot be read or prepared is listed in ``failed`` (``file``, ``error``) and the others are
    classified; only when none can be read is it an error (one-line :class:`UserError`).

    Returns ``model, dataset, checkpoint, epoch, tta, description, preprocessing`` (the
    checkpoint's input record), ``reference`` (:func:`confidence_reference`), ``failed`` and
    ``predictions``: per image ``file, size ([W, H]), mode, notes`` (what was done to it),
    ``top`` (``class, index, prob``, most likely first) and ``unfamiliar`` (its top probability
    is below the reference's threshold; ``None`` without a reference). With ``explain`` (a
    folder), each image's Grad-CAM heat map for its top class is drawn over it into
    ``explain/<image name>.gradcam.png`` (:mod:`cnnbench.inference.explain`), named in its
    record's ``explanation`` (with ``explained_by``: the layer, or ``saliency``)."""
    if topk < 1:
        raise UserError(f"--topk must be >= 1, got {topk}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    trained = load_trained_model(checkpoint, device)
    files = expand_inputs(inputs)
    pixels, records, failed = [], [], []
    for file in files:
        try:
            image = open_image(file)
            prepared, notes = trained.prepare(image, digit_style=digit_style)
        except UserError as exc:  # one bad file must not stop the others
            failed.append({"file": str(file), "error": str(exc)})
            continue
        pixels.append(prepared)
        records.append({"file": str(file), "size": list(image.size), "mode": image.mode,
                        "notes": notes})
    if not records:
        first = failed[0]["error"]
        raise UserError(first if len(failed) == 1 else
                        f"none of the {len(failed)} images could be read; the first: {first}")
    probs = trained.predict(torch.stack(pixels), batch_size=batch_size)
    reference = confidence_reference(trained)
    for record, top in zip(records, trained.top(probs, topk)):
        record["top"] = top
        record["unfamiliar"] = None if reference is None else top[0]["prob"] < reference["threshold"]
        if record["unfamiliar"]:
            record["notes"].append(
                f"unlike the images it was trained on: its top probability "
                f"{100 * top[0]['prob']:.1f}% is lower than on {100 - reference['percentile']:g}% "
                f"of {reference['images']} held-out {trained.config.dataset} images "
                f"(below {100 * reference['threshold']:.1f}%), so the answer means little")
    if explain is not None:
        _explain(trained, torch.stack(pixels), records, Path(explain), batch_size)
    return {"model": trained.config.model, "dataset": trained.config.dataset,
            "checkpoint": str(trained.path), "epoch": trained.epoch, "tta": trained.config.tta,
            "description": trained.describe(), "preprocessing": trained.preprocessing.to_dict(),
            "reference": reference, "failed": failed, "predictions": records}


def _explain(trained, pixels: torch.Tensor, records: list[dict[str, Any]], folder: Path,
             batch_size: int) -> None:
    """Grad-CAM overlays of ``pixels`` for their predicted classes, one PNG per record."""
    from cnnbench.inference.explain import explain_images, overlay

    used: set[str] = set()
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start:start + batch_size]
        result = explain_images(trained, batch)
        for i, heat in enumerate(result["maps"]):
            record = records[start + i]
            stem = Path(record["file"]).stem
            name, n = f"{stem}.gradcam.png", 1
            while name in used:  # two inputs of the same name from different folders
                n += 1
                name = f"{stem}-{n}.gradcam.png"
            used.add(name)
            label = trained.classes[int(result["classes"][i])]
            how = result["layer"] or "saliency"
            record["explanation"] = str(overlay(batch[i], heat, folder / name,
                                                f"{label} ({how})"))
            record["explained_by"] = how
