"""Seeded train/validation split of the training set (the test set is never split)."""

from __future__ import annotations

import torch

from cnnbench.errors import UserError


def split_sizes(n: int, val_fraction: float = 0.1) -> tuple[int, int]:
    """``(train, val)`` sizes that :func:`split_indices` produces for ``n`` samples."""
    if not 0.0 <= float(val_fraction) < 1.0:
        raise UserError(f"--val-split must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * float(val_fraction)))
    return n - n_val, n_val


def split_indices(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into disjoint, sorted int64 ``(train_idx, val_idx)``.

    ``round(n * val_fraction)`` indices go to validation (none for ``val_fraction=0``). The
    choice depends only on ``(n, val_fraction, seed)``: a CPU ``torch.Generator`` seeded with
    ``seed`` drives ``randperm``, which gives the same permutation on every machine.
    """
    if n < 0:
        raise UserError(f"cannot split {n} samples")
    _, n_val = split_sizes(n, val_fraction)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    perm = torch.randperm(n, generator=generator)
    # Sorted, so that x[train_idx] keeps the file order (and is a cheap, cache-friendly gather).
    return perm[n_val:].sort().values, perm[:n_val].sort().values
