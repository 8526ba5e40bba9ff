"""Batched augmentation ops on float image batches ``B x C x H x W`` (any device).

Each op takes per-sample parameters drawn in advance (offsets, masks, centres) as tensors, so a
whole batch is transformed by a handful of tensor ops and no Python loop runs per sample. The
loader draws those parameters from seeded generators (see ``TensorLoader``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from cnnbench.errors import UserError

AUGMENTATIONS = ("none", "crop", "flip", "altflip", "translate", "cutout")


def parse_augment(augment: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"crop+flip"`` (or a list) -> ``("crop", "flip")``; ``none``/empty -> ``()``.

    Unknown names, or ``flip`` with ``altflip``, are a :class:`UserError`.
    """
    if augment is None:
        return ()
    parts = augment.replace(",", "+").split("+") if isinstance(augment, str) else list(augment)
    names = [p.strip().lower() for p in parts if p and p.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"unknown augmentation {unknown[0]!r}; valid: {', '.join(AUGMENTATIONS)}, "
                        f"joined with '+' (e.g. crop+flip)")
    chosen = tuple(dict.fromkeys(n for n in names if n != "none"))  # dedupe, keep order
    if "flip" in chosen and "altflip" in chosen:
        raise UserError("choose one of flip (random) and altflip (alternating), not both")
    return chosen


def default_crop_padding(image_size: tuple[int, int]) -> int:
    """Zero padding of ``crop``: 4 px, but 2 px for 28 px (MNIST-sized) images."""
    return 2 if min(image_size) <= 28 else 4


def shift_crop(x: torch.Tensor, offsets: torch.Tensor, padding: int, mode: str = "constant") -> torch.Tensor:
    """Per-sample crop of the padded batch: ``out[b] = pad(x)[b, :, oy:oy+H, ox:ox+W]``.

    ``offsets`` is ``B x 2`` (oy, ox) in ``[0, 2 * padding]``; ``mode`` is ``"constant"`` (zero
    padding, as torchvision's ``RandomCrop(padding=p)``) or ``"reflect"``. Two ``gather`` calls
    pick rows then columns for every sample at once.
    """
    if padding == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), mode=mode)
    offsets = offsets.to(x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # B x H
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # B x W
    padded = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * padding))
    return padded.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the samples where the boolean ``mask`` (``B``) is true."""
    return torch.where(mask.to(x.device)[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, centers: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a ``size x size`` square per sample around ``centers`` (``B x 2``: cy, cx), clipped
    at the border (DeVries & Taylor 2017). Applied after normalisation, zero is the mean pixel.
    """
    b, _, h, w = x.shape
    centers = centers.to(x.device)
    top = centers[:, 0:1] - size // 2
    left = centers[:, 1:2] - size // 2
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_rows = (ys >= top) & (ys < top + size)  # B x H
    in_cols = (xs >= left) & (xs < left + size)  # B x W
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    return x.masked_fill(mask[:, None], 0.0)


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the batch to ``size`` (int: square); antialiased when shrinking."""
    target = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == target:
        return x
    shrinking = target[0] < x.shape[-2] or target[1] < x.shape[-1]
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=shrinking)
