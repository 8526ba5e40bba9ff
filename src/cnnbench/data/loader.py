"""``TensorLoader``: batches straight from in-memory uint8 tensors, augmented on the device.

No ``Dataset``/``DataLoader``, no worker processes, no per-sample Python: each epoch draws its
permutation and every per-sample augmentation parameter up front from generators seeded by
``(seed, epoch)``, then each batch is one ``index_select`` plus a few batched tensor ops. The
batches of an epoch are therefore a pure function of ``(seed, epoch)``: a resumed run that
calls ``set_epoch`` (or ``load_state_dict``) gets exactly the batches of the original run.

Several processes (``rank``, ``world_size``): every process draws the same permutation and
augmentation parameters and takes its contiguous block of each global batch
(:func:`shard_bounds`), so the global batch ``k`` over all processes is the one-process batch
``k``, each image with the same augmentation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch

from cnnbench.data import augment as aug
from cnnbench.errors import UserError


def _stream_seed(seed: int, epoch: int, stream: str) -> int:
    """Independent seed per (seed, epoch, stream), identical on every machine and Python.

    Separate streams keep the shuffle order unchanged when an augmentation is added.
    """
    digest = hashlib.sha256(f"cnnbench/{seed}/{epoch}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of process ``rank``'s contiguous block of ``n`` items: the blocks of
    ``torch.tensor_split`` (sizes differ by at most one, the larger ones first)."""
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


def _generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    # Always a CPU generator: the same draws on CPU and GPU runs; parameters then move over.
    return torch.Generator(device="cpu").manual_seed(_stream_seed(seed, epoch, stream))


class TensorLoader:
    """Iterate ``(x, y)`` batches over uint8 images ``x`` (``N x C x H x W``) and labels ``y``.

    ``x`` comes out float32 on ``device``: ``x / 255``, then ``(x - mean) / std`` per channel
    (exactly torchvision's ``ToTensor()`` + ``Normalize(mean, std)``), augmented per
    ``augment``, resized to ``resize`` (bilinear) and in channels-last layout if asked. ``y``
    comes out int64 on ``device``.

    ``augment``: ``+``-joined ``crop`` (zero padding ``crop_padding``, default 4 px, 2 px for
    28 px images), ``flip`` (random mirror), ``altflip`` (each image mirrored in exactly one of
    any two consecutive epochs), ``translate`` (shift by up to ``translate`` px, reflect
    padding), ``cutout`` (``cutout_size`` square, default half the side, zeroed after
    normalisation); ``none`` or ``None`` for no augmentation.

    ``resident``: with a device other than the data's, move the whole dataset there once
    (default); ``False`` keeps it on the host and copies each batch, pinned and non-blocking.
    To use part of a dataset (a split, a ``--limit``), pass the sliced tensors.

    ``rank``, ``world_size``: this process's share of a distributed run. ``batch_size`` is then
    the global batch (all processes together), ``len()`` and ``num_samples`` count global
    batches and images, and iterating yields this process's block of each global batch (see
    :meth:`global_batch_sizes`). A last batch with fewer images than processes is dropped, so
    that every process has images in every step.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: str | Sequence[str] | None = "none",
        resize: int | tuple[int, int] | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
        *,
        crop_padding: int | None = None,
        translate: int = 2,
        cutout_size: int | None = None,
        resident: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"x must be uint8 N x C x H x W, got {x.dtype} {tuple(x.shape)}")
        if y.dim() != 1 or len(y) != len(x):
            raise ValueError(f"y must be 1-D with {len(x)} labels, got {tuple(y.shape)}")
        if int(batch_size) < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} processes")
        self.device = torch.device(device)
        self.resident = resident or self.device == x.device
        # The whole uint8 dataset moves once; per batch only indices and float results are made.
        self.x = x.to(self.device) if self.resident else x
        self.y = y.to(device=self.x.device, dtype=torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        self.drop_last = drop_last
        self.rank, self.world_size = int(rank), int(world_size)
        self.channels_last = channels_last
        self.augment = aug.parse_augment(augment)
        self.resize = resize
        size = tuple(x.shape[-2:])
        self.crop_padding = aug.default_crop_padding(size) if crop_padding is None else int(crop_padding)
        self.translate = int(translate)
        self.cutout_size = max(1, min(size) // 2) if cutout_size is None else int(cutout_size)
        if mean is not None:
            if len(mean) != x.shape[1] or len(std) != x.shape[1]:
                raise ValueError(f"mean/std need {x.shape[1]} values (one per channel)")
            # float32 tensors shaped like torchvision's Normalize uses them: bit-identical output.
            self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(-1, 1, 1)
            self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        else:
            self.mean = self.std = None

    # -- sizes and state -------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """Number of images this loader draws from (per epoch, before ``drop_last``)."""
        return len(self.y)

    def __len__(self) -> int:
        """Batches per epoch (global batches when sharded: the same on every process)."""
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (0 < rest and not self.drop_last and rest >= self.world_size)

    def global_batch_sizes(self) -> list[int]:
        """Images of each batch of an epoch, all processes together (one process: the sizes of
        its batches); a distributed step weighs its loss with them."""
        sizes = [self.batch_size] * len(self)
        if sizes and len(self) * self.batch_size > self.num_samples:
            sizes[-1] = self.num_samples - (len(self) - 1) * self.batch_size
        return sizes

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentation draws the next iteration uses."""
        self.epoch = int(epoch)

    def load_state_dict(self, state: dict) -> None:
        """Restore the draws of a checkpoint's ``{"seed", "epoch"}``: what the batches depend on."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])

    # -- one epoch -------------------------------------------------------------------------
    def _epoch_draws(self) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Permutation and per-sample augmentation parameters of the current epoch (CPU)."""
        n, epoch, seed = self.num_samples, self.epoch, self.seed
        order = torch.randperm(n, generator=_generator(seed, epoch, "shuffle")) if self.shuffle else None
        h, w = self.x.shape[-2:]
        draws: dict[str, torch.Tensor] = {}
        if "crop" in self.augment:
            draws["crop"] = torch.randint(0, 2 * self.crop_padding + 1, (n, 2),
                                          generator=_generator(seed, epoch, "crop"))
        if "translate" in self.augment:
            draws["translate"] = torch.randint(0, 2 * self.translate + 1, (n, 2),
                                               generator=_generator(seed, epoch, "translate"))
        if "flip" in self.augment:
            draws["flip"] = torch.rand(n, generator=_generator(seed, epoch, "flip")) < 0.5
        if "altflip" in self.augment:
            # A fixed random half per seed (epoch-independent stream), flipped in even epochs;
            # the other half in odd epochs: each image is mirrored in one of any two epochs.
            half = torch.rand(n, generator=_generator(seed, -1, "altflip")) < 0.5
            draws["flip"] = half if epoch % 2 == 0 else ~half
        if "cutout" in self.augment:
            g = _generator(seed, epoch, "cutout")
            draws["cutout"] = torch.stack(
                [torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)], 1)
        if order is not None:
            draws = {k: v[order] for k, v in draws.items()}  # align draws with batch positions
        return order, draws

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, draws = self._epoch_draws()
        if order is not None:
            order = order.to(self.x.device, non_blocking=True)
        draws = {k: v.to(self.device, non_blocking=True) for k, v in draws.items()}
        pin = not self.resident and self.device.type == "cuda"
        batch_start = 0
        for size in self.global_batch_sizes():
            lo, hi = shard_bounds(size, self.rank, self.world_size)
            start, stop = batch_start + lo, batch_start + hi  # this process's block of the batch
            batch_start += size
            if order is None:
                xb, yb = self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if not self.resident:
                if pin:
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                xb = xb.to(self.device, non_blocking=True)
                yb = yb.to(self.device, non_blocking=True)
            yield self._transform(xb, {k: v[start:stop] for k, v in draws.items()}), yb

    def _transform(self, xb: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        x = xb.to(torch.float32).div(255)  # ToTensor(): float, then /255
        # Geometric ops before normalisation, so padding is black as in torchvision's RandomCrop.
        if "crop" in draws:
            x = aug.shift_crop(x, draws["crop"], self.crop_padding, "constant")
        if "translate" in draws:
            x = aug.shift_crop(x, draws["translate"], self.translate, "reflect")
        if "flip" in draws:
            x = aug.flip_where(x, draws["flip"])
        if self.mean is not None:
            x = x.sub_(self.mean).div_(self.std)  # Normalize(): the same two ops, same order
        if "cutout" in draws:
            x = aug.cutout(x, draws["cutout"], self.cutout_size)
        if self.resize is not None:
            x = aug.resize(x, self.resize)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
