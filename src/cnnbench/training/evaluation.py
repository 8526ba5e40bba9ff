"""Evaluation: :func:`evaluate` (the loop over a split, used by training, ``eval`` and the
benchmarks) and :func:`evaluate_checkpoint` (a trained model again, on its run's split).

Evaluation runs under ``torch.inference_mode()`` with the sums kept on the device and read
once. Several processes (``dist``): each holds its block of the split; the sums are
all-reduced and the predictions gathered, so every process gets the result of the whole split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnbench.devices import autocast, resolve_amp, resolve_device
from cnnbench.errors import UserError
from cnnbench.training.calibration import CalibrationSums, fit_temperature
from cnnbench.training.tta import predict_logits

if TYPE_CHECKING:
    from cnnbench.training.distributed import Distributed


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool):
    """A batch on ``device`` (no copy when it is there), channels-last when asked."""
    if x.device != device:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def saved_model(config, spec, input_size: tuple[int, int], weights: dict[str, torch.Tensor],
                source: str, device: torch.device) -> nn.Module:
    """A fresh model of ``config`` holding ``weights`` (named ``source`` in an error), on
    ``device`` in the run's memory format. Building draws initial weights: from a forked
    random stream, so the caller's is left as it was."""
    from cnnbench.models import create_model_for
    from cnnbench.training.checkpoint import load_model_weights

    with torch.random.fork_rng(devices=[]):
        model = create_model_for(config, spec, input_size)
    load_model_weights(model, weights, source, config.model)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def gallery_heat(model: nn.Module, config, inputs, device: torch.device, rows: torch.Tensor,
                 classes: torch.Tensor) -> dict[str, Any]:
    """Grad-CAM heat maps (:mod:`cnnbench.models.cam`, at the layer the registry names for
    ``config.model``) of the test images at ``rows`` of ``inputs`` for ``classes``, as uint8
    N x H x W at the stored images' size: the ``heat`` of the misclassified gallery
    (:func:`cnnbench.training.rundir.save_misclassified`), with ``cam_layer`` and ``cam_method``."""
    from cnnbench.models.cam import cam_layer, grad_cam
    from cnnbench.models.registry import model_info
    from cnnbench.training.inputs import make_loader

    x = torch.cat([batch for batch, _ in make_loader(config, inputs, "test", device, rows=rows)])
    layer = cam_layer(model, x, model_info(config.model).cam_layer)
    result = grad_cam(model, x, target=classes.to(device), layer=layer)
    size = tuple(inputs.test[0].shape[-2:])
    maps = nn.functional.interpolate(result["maps"][:, None], size=size, mode="bilinear",
                                     align_corners=False)[:, 0]
    return {"heat": (maps.clamp(0, 1) * 255).round().to(torch.uint8).cpu(),
            "cam_layer": result["layer"] or "", "cam_method": result["method"]}


def explain_gallery(run_dir: str | Path, *, data_dir: str | None = None,
                    device: str | None = None) -> dict[str, Any]:
    """Add Grad-CAM heat maps (:func:`gallery_heat`) to the misclassified gallery of a run
    trained before runs saved them: from the weights the run tested (its summary's
    ``tested_weights``: ``last.ckpt`` for ``last``, else ``best.ckpt``), for the gallery's
    predicted classes, written back into ``misclassified.pt``. Returns ``images``,
    ``cam_layer``, ``cam_method``, ``checkpoint`` and ``written_to``."""
    from cnnbench.training.rundir import BEST, LAST, MISCLASSIFIED, read_summary

    run_dir = Path(run_dir)
    gallery_file = run_dir / MISCLASSIFIED
    if not gallery_file.is_file():
        raise UserError(f"{run_dir} holds no {MISCLASSIFIED} (give a run directory of a "
                        f"finished run; runs write it after their test)")
    gallery = torch.load(gallery_file, map_location="cpu", weights_only=True)
    tested = (read_summary(run_dir) or {}).get("tested_weights")
    checkpoint = run_dir / (LAST if tested == "last" else BEST)
    saved = open_for_evaluation(checkpoint, data_dir=data_dir, device=device)
    if len(gallery["index"]):
        gallery.update(saved.gallery_heat(gallery["index"], gallery["pred"]))
        torch.save(gallery, gallery_file)
    return {"images": len(gallery["index"]), "cam_layer": gallery.get("cam_layer"),
            "cam_method": gallery.get("cam_method"), "checkpoint": str(checkpoint),
            "written_to": str(gallery_file)}


def evaluate_checkpoint(path: str | Path, split: str = "test", *, data_dir: str | None = None,
                        device: str | None = None, batch_size: int | None = None,
                        tta: str | None = None, allow_changed_data: bool = False) -> dict[str, Any]:
    """Evaluate a trained model (:func:`cnnbench.training.checkpoint.open_checkpoint`: a
    checkpoint file, or a run directory's ``best.ckpt``, else ``last.ckpt``) on its run's
    ``test`` or ``val`` split, rebuilt from the config stored in it (same split seed, limits
    and normalisation), so ``best.ckpt`` reproduces the summary's ``test_acc`` exactly. Only
    the model and that split are built; the caller's seeds and threads are left alone.

    Returns :func:`evaluate`'s dict plus ``split``, ``checkpoint``, ``epoch``, ``model``,
    ``dataset`` and ``tta``; on the test split of a run with a validation split, ``scaled``
    holds the calibration at the temperature fitted on validation, as in the run's summary. Data that changed since the run (other classes, another test set:
    the checkpoint records a fingerprint) is a one-line :class:`UserError`; with
    ``allow_changed_data`` only other classes are."""
    if split not in ("test", "val"):
        raise UserError(f"split must be test or val, got {split!r}")
    saved = open_for_evaluation(path, data_dir=data_dir, device=device, batch_size=batch_size,
                                tta=tta, allow_changed_data=allow_changed_data)
    if split == "val" and saved.inputs.val is None:
        raise UserError(f"the run of {saved.file} has no validation split (val_split 0); use "
                        f"--split test")
    temperature = None
    if split == "test" and saved.inputs.val is not None:  # as the run did: fitted on validation
        val = saved.evaluate("val", return_logits=True)
        temperature = fit_temperature(val["logits"], val["targets"])
    result = saved.evaluate(split, temperature=temperature)
    config = saved.config
    return {**result, "split": split, "checkpoint": str(saved.file), "epoch": saved.state["epoch"],
            "model": config.model, "dataset": config.dataset, "tta": config.tta}


@dataclasses.dataclass
class SavedModel:
    """A trained model rebuilt for evaluation: its checkpoint ``file`` and ``state``, the run's
    ``config`` (with the caller's changes), the run's split ``inputs`` and the ``model``."""

    file: Path
    state: dict[str, Any]
    config: Any
    device: torch.device
    inputs: Any
    model: nn.Module

    def evaluate(self, split: str, inputs=None, **kw) -> dict[str, Any]:
        """:func:`evaluate` of ``split`` (of ``inputs``, by default the run's) as the run did."""
        from cnnbench.training.inputs import make_loader

        c = self.config
        return evaluate(self.model, make_loader(c, inputs or self.inputs, split, self.device),
                        num_classes=self.inputs.spec.num_classes, device=self.device,
                        amp=resolve_amp(c.amp, self.device), channels_last=c.channels_last,
                        tta=c.tta, **kw)

    def gallery_heat(self, rows: torch.Tensor, classes: torch.Tensor) -> dict[str, Any]:
        """:func:`gallery_heat` of this model on its run's test images at ``rows``."""
        return gallery_heat(self.model, self.config, self.inputs, self.device, rows, classes)


def open_for_evaluation(path: str | Path, *, data_dir: str | None = None,
                        device: str | None = None, batch_size: int | None = None,
                        tta: str | None = None, allow_changed_data: bool = False) -> SavedModel:
    """The model of a checkpoint (a file or a run directory) with its run's data, rebuilt from
    the config stored in it; only the model and the data are built. Data that changed since
    the run is a one-line :class:`UserError` (other classes always, another test set unless
    ``allow_changed_data``)."""
    from cnnbench.training.checkpoint import open_checkpoint
    from cnnbench.training.inputs import check_same_data, prepare_data

    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    file, state, config = open_checkpoint(path)
    changes = {k: v for k, v in {"data_dir": data_dir, "device": device,
                                  "eval_batch_size": batch_size, "tta": tta}.items() if v is not None}
    config = config.replace(**changes)
    if config.amp == "auto" and state.get("amp"):  # as the run trained: never measured again
        config = config.replace(amp=state["amp"])
    target = resolve_device(config.device)
    inputs = prepare_data(config)
    check_same_data(state.get("data"), inputs.fingerprint(), str(file),
                    allow_changed_test=allow_changed_data)
    model = saved_model(config, inputs.spec, inputs.input_size, state["model"], str(file), target)
    return SavedModel(file, state, config, target, inputs, model)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, *, num_classes: int,
             device: torch.device | str | None = None, amp: str = "off",
             channels_last: bool = False, tta: str = "none",
             return_predictions: bool = False, return_logits: bool = False,
             temperature: float | None = None, dist: Distributed | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``loader`` (the model is put in eval mode, then restored).

    With ``dist``, ``loader`` holds this process's block of the split (blocks in rank order);
    the sums are all-reduced and the predictions gathered, so every process gets the
    result of the whole split, equal to one process's.

    Returns ``loss`` (mean cross-entropy, no label smoothing: the NLL), ``acc``, ``n``,
    ``correct``, ``per_class_acc`` (list; ``None`` for a class with no images),
    ``confusion_matrix`` (``[true][predicted]`` counts), the calibration ``ece``, ``brier`` and
    ``reliability`` bins (:mod:`cnnbench.training.calibration`) and, with ``temperature``,
    ``scaled``: the same calibration numbers (and ``nll``) of the logits divided by it. With
    ``return_predictions``, ``predictions`` and ``targets`` (CPU int64 tensors); with
    ``return_logits``, ``logits`` (CPU float32) and ``targets``. ``tta`` other than ``"none"``
    averages the logits over augmented views (:func:`cnnbench.training.tta.predict_logits`).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    acc_dtype = torch.float64 if device.type in ("cpu", "cuda") else torch.float32
    sums = CalibrationSums(device, acc_dtype)
    scaled = CalibrationSums(device, acc_dtype, temperature) if temperature is not None else None
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    preds, targets, all_logits = [], [], []
    n = 0
    try:
        for x, y in loader:
            x, y = to_device(x, y, device, channels_last)
            with autocast(device, amp):
                logits = predict_logits(model, x, tta)
            logits = logits.float()
            sums.add(logits, y)
            if scaled is not None:
                scaled.add(logits, y)
            pred = logits.argmax(1)
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes ** 2)
            if return_predictions:
                preds.append(pred.cpu())
            if return_logits:
                all_logits.append(logits.cpu())
            if return_predictions or return_logits:
                targets.append(y.cpu())
            n += y.shape[0]
    finally:
        model.train(was_training)
    if dist is not None:
        dist.all_reduce_sum(confusion)
        n = int(dist.all_reduce_sum(sums.nll.new_tensor(float(n))).item())
        for tensor in sums.tensors() + (scaled.tensors() if scaled is not None else []):
            dist.all_reduce_sum(tensor)
    if n == 0:
        raise UserError("the evaluation set is empty; use a larger split or --limit-eval")
    matrix = confusion.view(num_classes, num_classes).cpu()
    calibration = sums.result()
    correct = int(matrix.diag().sum())
    per_class_total = matrix.sum(1)
    per_class = [(int(matrix[i, i]) / int(t)) if int(t) else None
                 for i, t in enumerate(per_class_total)]
    result = {"loss": calibration.pop("nll"), "acc": correct / n, "n": n, "correct": correct,
              "per_class_acc": per_class, "confusion_matrix": matrix.tolist(), **calibration}
    if scaled is not None:
        result["scaled"] = {"temperature": temperature, **scaled.result()}
    gather = dist.all_gather_rows if dist is not None else (lambda rows: rows)
    if return_predictions:
        result["predictions"] = gather(_cat(preds))
    if return_logits:
        result["logits"] = gather(torch.cat(all_logits) if all_logits
                                  else torch.zeros(0, num_classes))
    if return_predictions or return_logits:
        result["targets"] = gather(_cat(targets))
    return result


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
