"""What every dataset source provides: :class:`Source` (find, check, fetch and decode one
dataset's files) and :class:`Decoded` (what decoding hands to the cache).

The concrete sources build on this: the torchvision layouts in :mod:`cnnbench.data.sources`,
image folders in :mod:`cnnbench.data.imagefolder`; :func:`cnnbench.data.sources.source_for`
picks one by dataset name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnbench.data.cache import Md5Memo
from cnnbench.data.errors import DatasetMissingError
from cnnbench.data.specs import DatasetSpec


@dataclass
class Decoded:
    """What a source hands to the cache: tensors plus what we learned while decoding."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    verified: bool
    verification: str
    notes: list[str] = field(default_factory=list)


class Source:
    """Base class: one dataset's files. Subclasses fill in the file-format specifics."""

    name: str
    spec: DatasetSpec | None
    probe_url: str | None = None  # a URL whose host answers when downloading can work

    def locate(self, data_root: Path, cache_root: Path) -> Path | None:
        """Folder holding a complete set of files, or ``None``."""
        raise NotImplementedError

    def missing_message(self, data_root: Path) -> str:
        """One line: which files are missing and where to put them."""
        raise NotImplementedError

    def unpack_local(self, data_root: Path, cache_root: Path) -> bool:
        """Unpack a local archive of the files into the cache, if there is one (no network)."""
        return False

    def obtain(self, data_root: Path, cache_root: Path, target: Path) -> None:
        """Download the files under ``target``; only called when a network answers."""
        raise DatasetMissingError(self.missing_message(data_root))

    def cache_stem(self, location: Path) -> str:
        """Cache file prefix: the dataset and where its files are (several roots may coexist)."""
        where = hashlib.sha256(str(location).encode()).hexdigest()[:8]
        return f"{self.name}-{where}"

    def fingerprint(self, location: Path) -> str:
        """Changes whenever a source file (or the checksums they are held to) changes."""
        raise NotImplementedError

    def decode(self, location: Path, cache_root: Path, memo: Md5Memo) -> Decoded:
        """Verify every file, then decode them into uint8 N x C x H x W and int64 labels."""
        raise NotImplementedError
