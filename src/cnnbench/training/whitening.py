"""Patch-whitening initialisation of a network's first convolution.

A first convolution whose filters are the eigenvectors of the covariance of the training
images' ``k x k`` patches, each divided by the square root of its eigenvalue, maps image
patches to decorrelated, unit-variance features (ZCA/PCA whitening of patches; used by
D. Page, "How to train your ResNet", 2018, and K. Jordan's airbench, arXiv 2404.00498).
The network then starts from features in which every direction of pixel space is equally
loud, which speeds up early training; airbench also keeps these filters frozen.

Rules, with ``d = in_channels * kh * kw`` the patch dimension and eigenvectors in decreasing
order of eigenvalue:

* ``out_channels >= d``: filter ``i < d`` is eigenvector ``i`` scaled by
  ``1 / sqrt(eigenvalue_i + eps)``; filters ``d .. 2d-1`` (as many as exist) are the same
  filters negated, so a following ReLU/GELU keeps both signs of every component (airbench's
  ``out_channels == 2d``). Filters beyond ``2d`` keep their existing initialisation.
* ``out_channels < d``: the top ``out_channels`` eigenvectors (most of the variance), scaled
  the same way.
* The bias, if any, is zeroed.

Statistics: the covariance is estimated (mean removed, float64 accumulation) from all
stride-1, unpadded ``k x k`` patches (with the conv's dilation) of at most ``max_images``
images (default 5,000, evenly spaced over the given tensor, so no random numbers are drawn).
For 5,000 CIFAR images and ``k = 2`` that is 4.8 M patches and about 1 s on one core. Images
must be float and normalised the way the model sees them. Patch statistics do not depend on
position, so any stride is supported; with zero padding the outputs at the border see zeros
(the normalised mean) and are whitened only approximately. Unsupported (:class:`UserError`):
grouped convolutions (a filter sees only part of the channels) and ``padding_mode`` other
than ``"zeros"``. With ``eps`` (default 5e-4, airbench's value for normalised images) the
whitened output covariance is ``diag(lambda / (lambda + eps))``: close to the identity where
the eigenvalue ``lambda`` is well above ``eps``; ``eps`` stops near-constant directions (e.g.
MNIST's flat background) from being amplified without bound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnbench.errors import UserError

__all__ = ["init_patch_whitening", "find_whitening_conv", "patch_covariance", "set_whitening_trainable"]

_CHUNK = 256  # images per unfold: bounds the patch matrix to a few tens of MB


def find_whitening_conv(model: nn.Module) -> nn.Conv2d:
    """The convolution to whiten: ``model.whiten`` if the model has one, else its first
    ``nn.Conv2d`` in registration order."""
    whiten = getattr(model, "whiten", None)
    if whiten is not None:
        if not isinstance(whiten, nn.Conv2d):
            raise UserError(f"model.whiten is a {type(whiten).__name__}, not an nn.Conv2d; "
                            f"patch whitening needs a convolution")
        return whiten
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise UserError(f"{type(model).__name__} has no nn.Conv2d to whiten; "
                    f"turn whitening initialisation off for this model")


def set_whitening_trainable(conv: nn.Conv2d, *, weight: bool, bias: bool) -> None:
    """Train (or freeze) the whitening convolution's filters and bias. airbench keeps the
    whitening filters frozen for the whole run and trains the bias for the first 3 epochs
    only (``TrainConfig.whiten_bias_epochs``). With both frozen, and nothing before the layer
    needing gradients, backpropagation also stops at the next layer's input: the step is
    cheaper. Frozen parameters get no ``.grad``, so the optimizer (and its weight decay) skips
    them."""
    conv.weight.requires_grad_(weight)
    if not weight:
        conv.weight.grad = None
    if conv.bias is not None:
        conv.bias.requires_grad_(bias)
        if not bias:
            conv.bias.grad = None


def patch_covariance(images: Tensor, kernel_size: tuple[int, int], dilation: tuple[int, int] = (1, 1),
                     max_images: int = 5000) -> Tensor:
    """Covariance (float64, ``d x d``, mean removed) of all stride-1 unpadded patches of
    ``images`` (N, C, H, W), flattened in the ``(C, kh, kw)`` order of a conv weight."""
    n = images.shape[0]
    if n > max_images:
        images = images[torch.linspace(0, n - 1, max_images, device=images.device).long()]
    d = images.shape[1] * kernel_size[0] * kernel_size[1]
    second = torch.zeros(d, d, dtype=torch.float64, device=images.device)
    total = torch.zeros(d, dtype=torch.float64, device=images.device)
    count = 0
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start:start + _CHUNK].float()
        cols = F.unfold(chunk, kernel_size, dilation=dilation)    # (B, d, L)
        patches = cols.transpose(1, 2).reshape(-1, d)             # (B*L, d)
        second += (patches.T @ patches).double()
        total += patches.sum(0, dtype=torch.float64)
        count += patches.shape[0]
    mean = total / count
    return (second - count * torch.outer(mean, mean)) / (count - 1)


@torch.no_grad()
def init_patch_whitening(conv: nn.Conv2d, images: Tensor, eps: float = 5e-4,
                         max_images: int = 5000) -> Tensor:
    """Set ``conv``'s weights to whiten the patches of ``images`` (see the module docstring).

    Args:
        conv: the first convolution (``groups == 1``, zero padding if any).
        images: normalised float training images (N, C, H, W), C == ``conv.in_channels``.
        eps: added to each eigenvalue before the inverse square root.
        max_images: use at most this many images (evenly spaced) for the statistics.

    Returns:
        The patch-covariance eigenvalues in decreasing order (float64, length ``d``).
    """
    if not isinstance(conv, nn.Conv2d):
        raise UserError(f"patch whitening needs an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise UserError(f"cannot whiten a grouped convolution (groups={conv.groups}): each "
                        f"filter sees only part of the channels; use a conv with groups=1")
    if conv.padding_mode != "zeros" and conv.padding not in ("valid", (0, 0)):
        raise UserError(f"cannot whiten a convolution with padding_mode={conv.padding_mode!r}; "
                        f"use zero padding or none")
    if images.dim() != 4 or not images.is_floating_point():
        raise UserError(f"whitening needs normalised float images (N, C, H, W), got "
                        f"{images.dtype} of shape {tuple(images.shape)}")
    if images.shape[1] != conv.in_channels:
        raise UserError(f"images have {images.shape[1]} channels, the first conv expects "
                        f"{conv.in_channels}")
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    if images.shape[2] < span[0] or images.shape[3] < span[1]:
        raise UserError(f"images of {tuple(images.shape[2:])} px are smaller than the "
                        f"{span[0]}x{span[1]} receptive field of the conv to whiten")
    if images.shape[0] == 0:
        raise UserError("whitening needs at least one training image")
    if not 0 <= eps:
        raise UserError(f"whitening eps must be >= 0, got {eps}")

    cov = patch_covariance(images, (kh, kw), (dh, dw), max_images)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)        # ascending
    eigenvalues = eigenvalues.flip(0).clamp_min(0.0)           # descending; round-off below 0
    eigenvectors = eigenvectors.flip(1)
    d = cov.shape[0]
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T  # row i: component i
    filters = filters.reshape(d, conv.in_channels, kh, kw)

    out = conv.out_channels
    weight = conv.weight
    if out < d:
        weight.copy_(filters[:out])
    else:
        weight[:d].copy_(filters)
        extra = min(out - d, d)
        weight[d:d + extra].copy_(-filters[:extra])  # negations keep both signs through ReLU
    if conv.bias is not None:
        conv.bias.zero_()
    return eigenvalues
