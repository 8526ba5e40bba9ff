"""A trained model and its preprocessing, loaded from a checkpoint or a run directory.

::

    trained = load_trained_model("runs/lenet5-mnist-1")      # best.ckpt (else last.ckpt)
    pixels, notes = trained.prepare(image)                    # PIL image -> uint8 C x H x W
    probs = trained.predict(pixels[None])                     # N x num_classes probabilities

The checkpoint is opened by :func:`cnnbench.training.checkpoint.open_checkpoint` (the one way
every command opens a trained model; read with ``weights_only=True``). How an image becomes the model's input comes from the checkpoint's ``input``
record (channels, image size, input size, mean/std, class names; written by every run since it
was added); an older checkpoint falls back to its config and the dataset's spec. The pixels are
normalised and resized by the same :class:`cnnbench.data.TensorLoader` the evaluation uses, and
the run's test-time augmentation applies, so a test image predicted here gets the class
``cnnbench eval`` gives it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench import data
from cnnbench.config import TrainConfig
from cnnbench.errors import UserError
from cnnbench.models import create_model_for
from cnnbench.training.checkpoint import load_model_weights, open_checkpoint
from cnnbench.training.machine import resolve_device
from cnnbench.training.rundir import CONFIG, read_summary
from cnnbench.training.tta import predict_logits


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input (a checkpoint's ``input`` record)."""

    dataset: str
    channels: int
    image_size: tuple[int, int]     # the dataset's images (H, W)
    input_size: tuple[int, int]     # what the model takes (H, W): image_size unless resized
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Preprocessing":
        return cls(dataset=str(record["dataset"]), channels=int(record["channels"]),
                   image_size=_hw(record["image_size"]), input_size=_hw(record["input_size"]),
                   mean=tuple(float(v) for v in record["mean"]),
                   std=tuple(float(v) for v in record["std"]),
                   classes=tuple(str(c) for c in record["classes"]))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def describe(self) -> str:
        """``1x28x28 input, normalised with mean 0.1307 and std 0.3081``."""
        h, w = self.input_size
        resized = (f", resized from {self.image_size[0]}x{self.image_size[1]}"
                   if self.input_size != self.image_size else "")
        return (f"{self.channels}x{h}x{w} input{resized}, normalised with mean "
                f"{_numbers(self.mean)} and std {_numbers(self.std)}")


def _hw(value) -> tuple[int, int]:
    h, w = (int(v) for v in value)
    return h, w


def _numbers(values) -> str:
    return "/".join(f"{v:.4g}" for v in values)


def preprocessing_of(state: dict[str, Any], config: TrainConfig, where: str) -> Preprocessing:
    """The checkpoint's ``input`` record; for a checkpoint without one, what its config and the
    dataset's spec say (``imagefolder:PATH`` reads the folder for it)."""
    record = state.get("input")
    if record:
        try:
            return Preprocessing.from_record(record)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"checkpoint {where} has an unusable input record; it cannot be "
                            f"used for predictions") from None
    spec = data.get_spec(config.dataset, data_dir=config.data_dir)
    classes = (state.get("data") or {}).get("classes") or spec.classes
    size = (config.resize, config.resize) if config.resize else tuple(spec.image_size)
    return Preprocessing(dataset=spec.name, channels=spec.channels,
                         image_size=tuple(spec.image_size), input_size=size,
                         mean=tuple(config.mean if config.mean is not None else spec.mean),
                         std=tuple(config.std if config.std is not None else spec.std),
                         classes=tuple(classes))


@dataclasses.dataclass
class TrainedModel:
    """A model with its weights and preprocessing, in eval mode on ``device``."""

    path: Path                        # the checkpoint file
    config: TrainConfig
    preprocessing: Preprocessing
    model: nn.Module
    epoch: int
    device: torch.device
    run_dir: Path | None              # the run directory holding the checkpoint, if any
    summary: dict | None              # its summary.json

    @property
    def name(self) -> str:
        """The run directory's name (the checkpoint's file name when it has no run)."""
        return self.run_dir.name if self.run_dir is not None else self.path.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.preprocessing.classes

    @property
    def test_acc(self) -> float | None:
        value = (self.summary or {}).get("test_acc")
        return float(value) if isinstance(value, (int, float)) else None

    def describe(self) -> str:
        """``lenet5 on mnist (runs/x/best.ckpt, epoch 6): 1x28x28 input, normalised ...``."""
        return (f"{self.config.model} on {self.config.dataset} ({self.path}, epoch {self.epoch}): "
                f"{self.preprocessing.describe()}"
                + (f"; test-time augmentation {self.config.tta}" if self.config.tta != "none" else ""))

    def prepare(self, image, *, digit_style: bool = True):
        """A PIL image as the dataset's uint8 C x H x W pixels, and what was done to it
        (:func:`cnnbench.inference.images.prepare_image`)."""
        from cnnbench.inference.images import prepare_image

        return prepare_image(image, self.preprocessing, digit_style=digit_style)

    def inputs(self, images: torch.Tensor, batch_size: int = 256):
        """Batches of the model's float inputs for uint8 ``images`` (N x C x H x W at the
        dataset's image size), normalised and resized as the evaluation does."""
        p = self.preprocessing
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (
                p.channels, *p.image_size):
            raise ValueError(f"images must be uint8 N x {p.channels} x {p.image_size[0]} x "
                             f"{p.image_size[1]}, got {images.dtype} {tuple(images.shape)}")
        loader = data.TensorLoader(images, torch.zeros(len(images), dtype=torch.int64),
                                   batch_size=batch_size, shuffle=False, mean=p.mean, std=p.std,
                                   augment="none",
                                   resize=p.input_size if p.input_size != p.image_size else None,
                                   device=self.device)
        return (x for x, _ in loader)

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The logits (N x num_classes, CPU float32) of uint8 ``images``, with the run's
        test-time augmentation, as the evaluation computes them (in float32)."""
        out = []
        with torch.inference_mode():
            for x in self.inputs(images, batch_size):
                out.append(predict_logits(self.model, x, self.config.tta).float().cpu())
        return torch.cat(out)

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities (N x num_classes) of uint8 ``images``."""
        return self.logits(images, batch_size).softmax(1)

    def top(self, probs: torch.Tensor, k: int = 3) -> list[list[dict[str, Any]]]:
        """The ``k`` most likely classes of each row of ``probs``: ``{class, index, prob}``."""
        values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
        return [[{"class": self.classes[i], "index": int(i), "prob": float(v)}
                 for v, i in zip(row_v.tolist(), row_i.tolist())]
                for row_v, row_i in zip(values, indices)]


def load_trained_model(path: str | Path, device: str = "cpu") -> TrainedModel:
    """The model of a checkpoint (a run directory means its ``best.ckpt``, else ``last.ckpt``)
    with its weights, in eval mode on ``device``. A file that is not a cnnbench checkpoint, a
    config that no longer resolves or weights that do not fit the model the checkpoint names
    are one-line :class:`UserError`s."""
    file, state, config = open_checkpoint(path)
    prep = preprocessing_of(state, config, str(file))
    spec = data.DatasetSpec(prep.dataset, prep.channels, prep.image_size, len(prep.classes),
                            prep.classes, prep.mean, prep.std, source=f"checkpoint {file}")
    model = create_model_for(config, spec, prep.input_size)
    load_model_weights(model, state["model"], str(file), config.model)
    resolved = resolve_device(device)
    model.to(resolved).eval()
    run_dir = file.parent if (file.parent / CONFIG).exists() else None
    return TrainedModel(path=file, config=config, preprocessing=prep, model=model,
                        epoch=int(state["epoch"]), device=resolved, run_dir=run_dir,
                        summary=read_summary(run_dir) if run_dir is not None else None)
