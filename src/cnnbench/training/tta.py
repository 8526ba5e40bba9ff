"""Test-time augmentation (TTA): average a model's logits over a few transformed views.

Modes (the ``tta`` option of ``cnnbench train`` / ``cnnbench eval``):

* ``"none"``: ``model(x)``.
* ``"mirror"``: ``(model(x) + model(flip(x))) / 2`` with ``flip`` the horizontal mirror.
* ``"translate"``: ``model(x) / 2 + model(shift(x, -1, -1)) / 4 + model(shift(x, +1, +1)) / 4``,
  the image itself weighted 1/2 and moved one pixel up-left and one pixel down-right weighted
  1/4 each (3 forward passes, no mirror: for digits and other classes a mirror changes).
* ``"mirror_translate"``: ``mirror(x) / 2 + mirror(shift(x, -1, -1)) / 4 + mirror(shift(x, +1, +1)) / 4``,
  i.e. the mirror average of the image itself weighted 1/2 and of the image moved one pixel
  up-left and one pixel down-right weighted 1/4 each (6 forward passes), as in K. Jordan's
  airbench (arXiv 2404.00498). The vacated row and column are filled by reflection
  (``F.pad(mode="reflect")``), so the shifted image has no artificial border.

Logits (not probabilities) are averaged, as airbench does. Mirroring only suits datasets whose
classes are mirror-symmetric (CIFAR, natural images), not digits (``translate`` is for them).
The caller puts the model in ``eval()`` and runs this under ``torch.inference_mode()``, batch by
batch; each view is one forward pass over the caller's whole batch, so memory is that of plain
evaluation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cnnbench.config import TTA_MODES
from cnnbench.errors import UserError

__all__ = ["TTA_MODES", "TTA_VIEWS", "predict_logits", "shift"]

TTA_VIEWS = {"none": 1, "mirror": 2, "translate": 3, "mirror_translate": 6}  # forward passes per batch


def shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """Move the image content of ``x`` (N, C, H, W) by ``dy`` rows down and ``dx`` columns right
    (negative: up/left); the vacated pixels are filled by reflection. Same shape as ``x``."""
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise UserError(f"cannot shift a {h}x{w} image by ({dy}, {dx}) pixels")
    pad_y, pad_x = abs(dy), abs(dx)
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    top, left = pad_y - dy, pad_x - dx
    return padded[..., top:top + h, left:left + w]


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out  # aux-head models return tuples in train mode


def _mirror(model: nn.Module, x: Tensor) -> Tensor:
    return 0.5 * (_logits(model, x) + _logits(model, x.flip(-1)))


def predict_logits(model: nn.Module, x: Tensor, mode: str = "none") -> Tensor:
    """Logits (N, num_classes) of ``model`` on ``x`` with test-time augmentation ``mode``."""
    if mode == "none":
        return _logits(model, x)
    if mode == "mirror":
        return _mirror(model, x)
    if mode in ("translate", "mirror_translate"):
        view = _mirror if mode == "mirror_translate" else _logits
        return 0.5 * view(model, x) + 0.25 * view(model, shift(x, -1, -1)) + 0.25 * view(model, shift(x, 1, 1))
    raise UserError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")
