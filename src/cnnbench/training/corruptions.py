"""Robustness: a trained model's test accuracy under the common corruptions of real images.

Nine corruptions at five severities each, in the spirit of ImageNet-C (Hendrycks & Dietterich,
ICLR 2019) and MNIST-C (Mu & Gilmer, 2019), built from ``torchvision.transforms.v2``'s
functional ops on whole batches (no per-image Python; the noise is v2's ``GaussianNoise``
written out, so that it draws from a seeded generator): Gaussian noise, Gaussian blur,
contrast, brightness, rotation, translation, JPEG compression, elastic distortion and
pixelation (:data:`CORRUPTIONS` holds each one's parameter per severity; sizes are relative
to the image, so a 28 px digit and a 32 px photo are corrupted alike). Every corruption is
deterministic under a seed, whatever the batch size: the noise of the whole set and the 16
elastic fields are drawn once from a generator seeded by (seed, corruption, severity), and
image ``i`` takes field ``i % 16`` and the ``i``-th direction of rotation and translation in
turn.

The corrupted images are quantised back to ``uint8``, like the clean ones, and evaluated by the
run's own evaluation loader (normalisation, resize, test-time augmentation). Results: the
accuracy per corruption and severity, the mean corruption accuracy (mCA, over all 45) and the
relative drop ``(clean - mCA) / clean``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnbench.errors import UserError

SEVERITIES = (1, 2, 3, 4, 5)
ELASTIC_FIELDS = 16  # distinct displacement fields per severity (image i takes field i % 16)


def _generator(seed: int, name: str, severity: int) -> torch.Generator:
    digest = hashlib.sha256(f"cnnbench/corruptions/{seed}/{name}/{severity}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _alternating(x: torch.Tensor, start: int, groups: int,
                 apply: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """``apply(images, k)`` on the images whose index in the whole set (the batch begins at
    ``start``) is ``k`` modulo ``groups``: one call per group, the same for any batching."""
    out = torch.empty_like(x)
    for k in range(groups):
        first = (k - start) % groups
        if first < len(x):
            out[first::groups] = apply(x[first::groups], k)
    return out


def gaussian_noise(x, sigma: float, start: int, noise: torch.Tensor):
    # v2.GaussianNoise adds sigma * randn and clips; its randn comes from the global
    # generator, so the noise of the whole set is drawn once from a seeded one instead
    return (x + sigma * noise[start:start + len(x)].to(x.device)).clamp_(0, 1)


def _noise(shape, _level, g):
    return torch.randn(shape, generator=g)


def gaussian_blur(x, sigma: float, _start, _material):
    from torchvision.transforms.v2 import functional as F

    s = sigma * x.shape[-1] / 32
    k = 2 * math.ceil(3 * s) + 1
    return F.gaussian_blur(x, [k, k], [s, s])


def contrast(x, factor: float, _start, _material):
    from torchvision.transforms.v2 import functional as F

    return F.adjust_contrast(x, factor)


def brightness(x, shift: float, _start, _material):
    return (x + shift).clamp_(0, 1)  # as ImageNet-C: added, so a black background lightens


def rotation(x, degrees: float, start: int, _material):
    from torchvision.transforms.v2 import functional as F

    return _alternating(x, start, 2, lambda b, k: F.rotate(
        b, degrees if k == 0 else -degrees, interpolation=F.InterpolationMode.BILINEAR))


def translation(x, fraction: float, start: int, _material):
    from torchvision.transforms.v2 import functional as F

    d = fraction * x.shape[-1]
    moves = [(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)]  # right, left, down, up in turn
    return _alternating(x, start, 4, lambda b, k: F.affine(
        b, angle=0.0, translate=list(moves[k]), scale=1.0, shear=[0.0, 0.0]))


def jpeg(x, quality: int, _start, _material):
    from torchvision.transforms.v2 import functional as F

    as_uint8 = (x * 255).round_().to(torch.uint8).cpu()
    with warnings.catch_warnings():  # torchvision 0.29 points its JPEG codec to TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        compressed = F.jpeg(as_uint8, quality=quality)
    return compressed.to(x.device, torch.float32) / 255


def _fields(shape, alpha: float, g) -> list[torch.Tensor]:
    """:data:`ELASTIC_FIELDS` smooth random displacement fields (torchvision's
    ``elastic`` layout, 1 x H x W x 2, normalised coordinates) peaking at ``alpha`` px of a
    32 px image."""
    from torchvision.transforms.v2 import functional as F

    h, w = shape[-2:]
    sigma = 4.0 * w / 32
    k = 2 * math.ceil(3 * sigma) + 1
    scale = alpha * (w / 32) * 2 / torch.tensor([w, h], dtype=torch.float32).view(1, 2, 1, 1)
    fields = []
    for _ in range(ELASTIC_FIELDS):
        smooth = F.gaussian_blur(torch.rand(1, 2, h, w, generator=g) * 2 - 1, [k, k], [sigma, sigma])
        smooth = smooth / smooth.abs().amax().clamp(min=1e-8)
        fields.append((smooth * scale).permute(0, 2, 3, 1))
    return fields


def elastic(x, _alpha: float, start: int, fields: list[torch.Tensor]):
    from torchvision.transforms.v2 import functional as F

    return _alternating(x, start, len(fields),
                        lambda b, k: F.elastic(b, fields[k].to(x.device)))


def pixelate(x, factor: float, _start, _material):
    from torchvision.transforms.v2 import functional as F

    h, w = x.shape[-2:]
    small = F.resize(x, [max(1, round(h * factor)), max(1, round(w * factor))], antialias=True)
    return F.resize(small, [h, w], interpolation=F.InterpolationMode.NEAREST)


@dataclasses.dataclass(frozen=True)
class Corruption:
    name: str
    apply: Callable[..., torch.Tensor]  # (images in [0, 1], level, start, material) -> images
    levels: tuple  # the parameter at severities 1..5
    unit: str
    draw: Callable[..., Any] | None = None  # (shape of the whole set, level, generator) -> material


CORRUPTIONS = {c.name: c for c in (
    Corruption("gaussian_noise", gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38), "sigma", _noise),
    Corruption("gaussian_blur", gaussian_blur, (0.5, 0.75, 1.0, 1.5, 2.0), "sigma (px at 32 px)"),
    Corruption("contrast", contrast, (0.4, 0.3, 0.2, 0.1, 0.05), "factor"),
    Corruption("brightness", brightness, (0.1, 0.2, 0.3, 0.4, 0.5), "added"),
    Corruption("rotation", rotation, (10, 20, 30, 40, 50), "degrees (either way)"),
    Corruption("translation", translation, (0.05, 0.1, 0.15, 0.2, 0.25), "fraction of the size"),
    Corruption("jpeg", jpeg, (30, 20, 15, 10, 7), "quality"),
    Corruption("elastic", elastic, (1.0, 2.0, 3.0, 4.0, 5.0), "peak px at 32 px", _fields),
    Corruption("pixelate", pixelate, (0.6, 0.5, 0.4, 0.3, 0.25), "scale"),
)}


def subset(total: int, images: int, seed: int) -> torch.Tensor:
    """``images`` of ``total`` test images, drawn at random under ``seed`` (in test order):
    not the first ones, since a test set may be sorted by class (the CIFAR-10 JPEG mirror is)."""
    g = _generator(seed, "subset", 0)
    return torch.randperm(total, generator=g)[:images].sort().values


def check_names(names) -> list[str]:
    """``names`` (all corruptions when empty), or a one-line :class:`UserError` for one that
    is not a corruption."""
    from cnnbench.errors import did_you_mean

    for name in names or ():
        if name not in CORRUPTIONS:
            guess = did_you_mean(name, CORRUPTIONS)
            raise UserError(f"unknown corruption {name!r}" + (f" (did you mean {guess}?)" if guess else "")
                            + f"; choose from {', '.join(CORRUPTIONS)}")
    return list(names or CORRUPTIONS)


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int = 0,
            batch_size: int = 2048, device: torch.device | str = "cpu") -> torch.Tensor:
    """``images`` (uint8, N x C x H x W) under corruption ``name`` at ``severity`` (1-5), as
    uint8 on the CPU; computed on ``device`` in batches."""
    check_names([name])
    if severity not in SEVERITIES:
        raise UserError(f"severity must be 1 to 5, got {severity}")
    c = CORRUPTIONS[name]
    level = c.levels[severity - 1]
    material = c.draw(images.shape, level, _generator(seed, name, severity)) if c.draw else None
    out = torch.empty_like(images, device="cpu")
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device, torch.float32) / 255
        y = c.apply(x, level, start, material)
        out[start:start + batch_size] = (y.clamp(0, 1) * 255).round_().to(torch.uint8).cpu()
    return out


def evaluate_corruptions(path: str | Path, *, names: list[str] | None = None,
                         severities: tuple[int, ...] = SEVERITIES, seed: int = 0,
                         data_dir: str | None = None, device: str | None = None,
                         batch_size: int | None = None, images: int | None = None,
                         write: bool = True,
                         progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The test accuracy of a trained model (a checkpoint file or a run directory, as
    :func:`cnnbench.training.evaluate_checkpoint` opens it) on its run's test split (``images``
    of them at random under ``seed``, when given: a cheaper, coarser estimate, recorded as
    ``n``), clean and
    under each corruption and severity. Written to the run directory's ``corruptions.json``
    (``write``) when the checkpoint is in one."""
    from cnnbench.training.evaluation import open_for_evaluation
    from cnnbench.devices import device_name

    names = check_names(names)
    started = time.perf_counter()
    saved = open_for_evaluation(path, data_dir=data_dir, device=device, batch_size=batch_size)
    file, state, config, target, inputs = (saved.file, saved.state, saved.config, saved.device,
                                           saved.inputs)
    if images is not None and images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    x, y = inputs.test
    if images is not None and images < len(y):
        keep = subset(len(y), images, seed)
        x, y = x[keep], y[keep]

    def accuracy(images: torch.Tensor) -> float:
        return saved.evaluate("test", dataclasses.replace(inputs, test=(images, y)))["acc"]

    clean = accuracy(x)
    table: dict[str, list[float]] = {}
    for name in names:
        table[name] = [accuracy(corrupt(x, name, s, seed=seed, device=target)) for s in severities]
        if progress is not None:
            progress(f"{name}: " + ", ".join(f"{100 * a:.2f}" for a in table[name]))
    accs = [a for row in table.values() for a in row]
    mean = sum(accs) / len(accs)
    result = {
        "checkpoint": str(file), "model": config.model, "dataset": config.dataset,
        "epoch": state["epoch"], "n": len(y), "seed": seed, "severities": list(severities),
        "clean_acc": clean, "accuracy": table, "mean_corruption_acc": mean,
        "relative_drop": (clean - mean) / clean if clean > 0 else None,
        "per_corruption_mean": {k: sum(v) / len(v) for k, v in table.items()},
        "parameters": {k: {"unit": CORRUPTIONS[k].unit, "levels": list(CORRUPTIONS[k].levels)}
                       for k in names},
        "device": str(target), "device_name": device_name(target),
        "seconds": time.perf_counter() - started,
    }
    run_dir = file.parent
    if write and (run_dir / "summary.json").is_file():
        from cnnbench.training.rundir import CORRUPTIONS_FILE, write_json

        write_json(run_dir / CORRUPTIONS_FILE, result)
        result["written_to"] = str(run_dir / CORRUPTIONS_FILE)
    return result
