"""The data of a run: its dataset split into train/val/test, limited, with its normalisation,
and the loaders over each split.

``prepare_data(config)`` loads the dataset (decoded once into the cache), holds out the
validation images seeded by ``split_seed`` (the test set is never split), and applies
``limit_train`` / ``limit_eval`` as seeded random subsets; ``make_loader`` gives a
:class:`cnnbench.data.TensorLoader` over one split (training: shuffled and augmented, a function
of ``(seed, epoch)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch

from cnnbench import data
from cnnbench.config import TrainConfig
from cnnbench.errors import UserError


@dataclasses.dataclass
class Inputs:
    """The tensors of a run after splitting and limiting, and how to normalise them."""

    spec: Any
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]
    location: str = ""  # the folder the dataset's files were read from

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data a run was trained and tested on: the class names and a
        sha256 of the test split's images and labels (as limited). Checkpoints carry it, so
        evaluating one on data that changed since is caught (:func:`check_same_data`)."""
        digest = hashlib.sha256()
        for tensor in self.test:
            digest.update(tensor.contiguous().numpy().tobytes())
        return {"classes": list(self.spec.classes), "test_images": len(self.test[1]),
                "test_sha256": digest.hexdigest()}

    def preprocessing(self) -> dict[str, Any]:
        """How an image becomes the model's input, as plain values (every checkpoint carries
        it as ``input``, so a model can be used on new images without its dataset): the
        dataset's channels, image size (H, W) and class names, the model's input size (H, W;
        other than the images' with ``resize``) and the normalisation (per-channel mean/std
        on pixels scaled to [0, 1])."""
        return {"dataset": self.spec.name, "channels": self.spec.channels,
                "image_size": list(self.spec.image_size), "input_size": list(self.input_size),
                "mean": list(self.mean), "std": list(self.std), "classes": list(self.spec.classes)}

    @property
    def split(self) -> dict[str, int]:
        return {"train": len(self.train[1]), "val": len(self.val[1]) if self.val else 0,
                "test": len(self.test[1])}


def _subset(indices: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """``limit`` of ``indices`` drawn at random (seeded, sorted), or all when no limit applies."""
    if not limit or limit >= len(indices):
        return indices
    gen = torch.Generator().manual_seed(seed)
    return indices[torch.randperm(len(indices), generator=gen)[:limit]].sort().values


def prepare_data(config: TrainConfig) -> Inputs:
    """Load the dataset, split off validation (seeded by ``split_seed``), apply the limits."""
    ds = data.load_dataset(config.dataset, data_dir=config.data_dir)
    spec = ds.spec
    train_idx, val_idx = data.split_indices(len(ds.train_y), config.val_split, config.split_seed)
    if config.val_split > 0 and len(val_idx) == 0:
        raise UserError(f"val_split {config.val_split} leaves no validation image of "
                        f"{len(ds.train_y)}; use a larger split or 0")
    # Limits take a seeded random subset, never the first N: datasets stored in class order
    # (image folders, cifar10_jpeg) would otherwise give a single-class subset.
    train_idx = _subset(train_idx, config.limit_train, config.split_seed)
    val_idx = _subset(val_idx, config.limit_eval, config.split_seed + 1)
    test_x, test_y = ds.test_x, ds.test_y
    if config.limit_eval:
        test_idx = _subset(torch.arange(len(test_y)), config.limit_eval, config.split_seed + 2)
        test_x, test_y = test_x[test_idx], test_y[test_idx]
    if len(train_idx) == 0:
        raise UserError(f"no training images left (dataset {config.dataset}, val_split "
                        f"{config.val_split}, limit_train {config.limit_train})")
    val = (ds.train_x[val_idx], ds.train_y[val_idx]) if len(val_idx) else None
    mean = tuple(config.mean) if config.mean is not None else tuple(spec.mean)
    std = tuple(config.std) if config.std is not None else tuple(spec.std)
    if len(mean) != spec.channels or len(std) != spec.channels:
        raise UserError(f"mean/std need {spec.channels} values for {spec.name} (one per channel), "
                        f"got {len(mean)}/{len(std)}")
    size = (config.resize, config.resize) if config.resize else tuple(spec.image_size)
    return Inputs(spec=spec, train=(ds.train_x[train_idx], ds.train_y[train_idx]), val=val,
                   test=(test_x, test_y), mean=mean, std=std, input_size=size,
                   location=ds.location)


def make_loader(config: TrainConfig, inputs: Inputs, split: str, device: torch.device,
                batch_size: int | None = None, dist=None, rows: torch.Tensor | None = None):
    """A TensorLoader over one split: training (shuffled, augmented) or evaluation.

    ``dist`` (a :class:`cnnbench.training.distributed.Distributed`): the training loader yields
    this process's block of every global batch of ``batch_size``; an evaluation loader holds
    this process's contiguous block of the split (blocks in rank order, sizes differing by at
    most one) in batches of ``eval_batch_size`` per process. ``rows``: only these images of
    the split, in this order."""
    x, y = getattr(inputs, split)
    if rows is not None:
        x, y = x[rows], y[rows]
    training = split == "train"
    rank, world_size = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    if batch_size is None:
        batch_size = config.eval_batch_size or max(config.batch_size, 256)
    if not training and world_size > 1:
        start, stop = data.shard_bounds(len(y), rank, world_size)
        x, y = x[start:stop], y[start:stop]
        rank, world_size = 0, 1
    return data.TensorLoader(x, y, batch_size=batch_size, shuffle=training, seed=config.seed,
                        mean=inputs.mean, std=inputs.std,
                        augment=config.augment if training else "none",
                        resize=config.resize, device=device, drop_last=False,
                        channels_last=config.channels_last, rank=rank, world_size=world_size)


def check_same_data(recorded: dict[str, Any] | None, now: dict[str, Any], where: str, *,
                    allow_changed_test: bool = False) -> None:
    """A one-line :class:`UserError` when the data a checkpoint was trained on (``recorded``,
    its ``data`` entry; ``None`` for checkpoints that predate it) differs from ``now``: other
    classes always, another test set unless ``allow_changed_test``."""
    if not recorded:
        return
    old, new = recorded.get("classes"), now["classes"]
    if old != new:
        added = [c for c in new if c not in old]
        gone = [c for c in old if c not in new]
        change = ", ".join(part for part in (f"added {', '.join(added)}" if added else "",
                                             f"missing {', '.join(gone)}" if gone else "") if part)
        raise UserError(f"{where} was trained on {len(old)} classes but the dataset now has "
                        f"{len(new)} ({change or 'in another order'}); evaluate it on the data it "
                        f"was trained on")
    if not allow_changed_test and recorded.get("test_sha256") != now["test_sha256"]:
        raise UserError(f"the test set changed since {where} was trained ({recorded.get('test_images')} "
                        f"images then, {now['test_images']} now, other contents); its accuracy "
                        f"would not be the run's: restore the data, or pass --allow-changed-data "
                        f"to evaluate on the data as it is now")
