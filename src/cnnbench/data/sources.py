"""Source files of each dataset: where they are, whether they are intact, how to get them, and
how to decode them into uint8 tensors. :func:`source_for` gives a dataset's :class:`Source`
(the interface, in :mod:`cnnbench.data.source_base`): the torchvision layouts defined here, or
an image folder's (:class:`cnnbench.data.imagefolder.ImageFolderSource`).

Everything builds on torchvision: its md5 lists (``MNIST.resources``,
``CIFAR10.train_list`` ...), its IDX readers, its download helpers and its image decoders.
A source never writes into the data root unless it downloads there (and only when that root is
writable); decoding happens in a scratch folder inside the cache.

torchvision is imported only when files are verified, decoded or downloaded: importing it
costs about 1.5 s, ten times more than loading MNIST from the cache. So the file names of the
torchvision layouts are listed here (they are what a cache hit needs), while the md5s are
always torchvision's.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import urllib.parse
import zlib
from pathlib import Path

import torch

from cnnbench.data.cache import Md5Memo, ensure_writable_dir, fingerprint, scratch_dir, stat_key
from cnnbench.data.errors import DatasetCorruptError, DatasetMissingError
from cnnbench.data.imagefolder import FolderExpectation, ImageFolderSource
from cnnbench.data.source_base import Decoded, Source
from cnnbench.data.specs import imagefolder_path, registered_entry, registered_spec
from cnnbench.errors import UserError


def _tv_datasets():
    import torchvision.datasets

    return torchvision.datasets


def network_available(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout`` seconds.

    ``$CNNBENCH_OFFLINE=1`` answers no without trying. The probe runs in a daemon thread so that
    a slow DNS lookup (which has no timeout of its own) cannot hang an offline user either.
    """
    if os.environ.get("CNNBENCH_OFFLINE", "").strip() not in ("", "0"):
        return False
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _check_md5(file: Path, expected: str, memo: Md5Memo) -> None:
    got = memo.md5(file)
    if got != expected:
        raise DatasetCorruptError(
            f"{file} is corrupt or incomplete (md5 {got}, expected {expected} from torchvision's "
            f"list); it was not used: replace it with the official file, or delete it to download again"
        )


class TorchvisionSource(Source):
    """Files in a torchvision layout, ``<root>/<folder>/<files>``, held to torchvision's md5s.

    They are looked for in the data root, then in the cache's ``downloads/`` (where they land
    when the data root is read-only).
    """

    def __init__(self, name: str, tv_name: str, folder: str, files: tuple[str, ...], probe_url: str):
        self.name = name
        self.spec = registered_spec(name)
        self.tv_name = tv_name  # the torchvision.datasets class: md5 lists, URLs, reader
        self.folder = folder  # relative to the root
        self.files = files
        self.probe_url = probe_url

    @property
    def tv_class(self) -> type:
        return getattr(_tv_datasets(), self.tv_name)

    def md5s(self) -> dict[str, str]:
        """File name -> md5, from torchvision's lists (read at call time: tests patch them)."""
        raise NotImplementedError

    def locate(self, data_root, cache_root):
        for base in (data_root, cache_root / "downloads"):
            if all((base / self.folder / name).is_file() for name in self.files):
                return base / self.folder
        return None

    def missing_files(self, data_root: Path) -> list[str]:
        return [name for name in self.files if not (data_root / self.folder / name).is_file()]

    def fingerprint(self, location):
        return fingerprint(self.name, str(location), [[n, stat_key(location / n)] for n in self.files])

    def verify(self, location: Path, memo: Md5Memo) -> None:
        md5s = self.md5s()
        for name in self.files:
            _check_md5(location / name, md5s[name], memo)


class IdxSource(TorchvisionSource):
    """MNIST-style IDX ``.gz`` files in torchvision's layout: ``<root>/<Class>/raw/*.gz``."""

    FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

    def __init__(self, name: str, tv_name: str, probe_url: str):
        # torchvision's raw_folder is <root>/<class name>/raw.
        super().__init__(name, tv_name, f"{tv_name}/raw", self.FILES, probe_url)

    def md5s(self):
        return dict(self.tv_class.resources)

    def missing_message(self, data_root):
        return (f"{self.name}: {', '.join(self.missing_files(data_root))} not found in "
                f"{data_root / self.folder}; put the official files there (torchvision layout), "
                f"point --data-dir/$CNNBENCH_DATA at the folder holding {self.tv_name}/, "
                f"or run with network access to download them")

    def obtain(self, data_root, cache_root, target):
        from torchvision.datasets.utils import download_url

        raw = target / self.folder
        for name, md5 in self.md5s().items():
            errors = []
            for mirror in self.tv_class.mirrors:
                try:
                    download_url(f"{mirror}{name}", str(raw), filename=name, md5=md5)
                    break
                except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, md5 RuntimeError
                    errors.append(f"{mirror}: {exc}")
            else:
                raise DatasetMissingError(
                    f"{self.name}: downloading {name} failed ({'; '.join(errors)}); "
                    f"put the file into {data_root / self.folder} by hand")

    def decode(self, location, cache_root, memo):
        self.verify(location, memo)
        arrays = {}
        with scratch_dir(cache_root) as tmp:
            for split, prefix in (("train", "train"), ("test", "t10k")):
                images = self._read(location / f"{prefix}-images-idx3-ubyte.gz", Path(tmp), 3)
                labels = self._read(location / f"{prefix}-labels-idx1-ubyte.gz", Path(tmp), 1)
                if images.shape[0] != labels.shape[0]:
                    raise DatasetCorruptError(
                        f"{location}: {prefix} has {images.shape[0]} images but {labels.shape[0]} "
                        f"labels; replace the files with the official ones")
                if tuple(images.shape[1:]) != self.spec.image_size:
                    raise DatasetCorruptError(
                        f"{location}/{prefix}-images-idx3-ubyte.gz holds {tuple(images.shape[1:])} "
                        f"images, expected {self.spec.image_size}; replace it with the official file")
                arrays[f"{split}_x"] = images.unsqueeze(1).contiguous()  # N x 1 x H x W
                arrays[f"{split}_y"] = labels.to(torch.int64)
        return Decoded(self.spec, verified=True, verification="md5, torchvision's list", **arrays)

    @staticmethod
    def _read(gz_file: Path, tmp: Path, ndim: int) -> torch.Tensor:
        """Decompress with torchvision's helper, check the IDX header, read with its reader."""
        from torchvision.datasets.mnist import read_image_file, read_label_file
        from torchvision.datasets.utils import extract_archive

        try:
            raw = Path(extract_archive(str(gz_file), str(tmp)))
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
            raise DatasetCorruptError(
                f"{gz_file} is not a complete gzip file ({exc}); it was not used: "
                f"replace it with the official file") from None
        try:
            with open(raw, "rb") as f:
                magic = f.read(4)
            # IDX magic: two zero bytes, type 0x08 (uint8), number of dimensions.
            if len(magic) != 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
                raise ValueError(f"IDX header {magic.hex() or 'empty'}, expected 000008{ndim:02x}")
            reader = read_image_file if ndim == 3 else read_label_file
            return reader(str(raw))
        except (AssertionError, ValueError, TypeError, RuntimeError, KeyError) as exc:
            raise DatasetCorruptError(
                f"{gz_file} is not a valid IDX file ({exc}); it was not used: "
                f"replace it with the official file") from None
        finally:
            raw.unlink(missing_ok=True)


class CifarSource(TorchvisionSource):
    """CIFAR python batches in torchvision's layout: ``<root>/cifar-10-batches-py/...``."""

    def __init__(self, name: str, tv_name: str, folder: str, files: tuple[str, ...],
                 archive: str, probe_url: str):
        super().__init__(name, tv_name, folder, files, probe_url)
        self.archive = archive

    def md5s(self):
        tv = self.tv_class
        return {**dict(map(tuple, tv.train_list + tv.test_list)), tv.meta["filename"]: tv.meta["md5"]}

    def missing_message(self, data_root):
        missing = self.missing_files(data_root)
        what = ", ".join(missing) if len(missing) < len(self.files) else "its files"
        return (f"{self.name}: {what} not found in {data_root / self.folder}; download "
                f"{self.probe_url} and extract it into {data_root} (or put {self.archive} there), "
                f"or run with network access to download it")

    def unpack_local(self, data_root, cache_root):
        archive = data_root / self.archive
        if not archive.is_file():
            return False
        from torchvision.datasets.utils import extract_archive
        # The user placed the archive but did not extract it: extract into the cache (the data
        # root is never written), after checking it against torchvision's md5.
        memo = Md5Memo(cache_root)
        try:
            _check_md5(archive, self.tv_class.tgz_md5, memo)
        finally:
            memo.save()
        target = ensure_writable_dir(cache_root / "downloads", "cache folder")
        try:
            extract_archive(str(archive), str(target))
        except Exception as exc:  # noqa: BLE001 - tarfile/gzip errors
            raise DatasetCorruptError(f"{archive} cannot be extracted ({exc}); replace it") from None
        return True

    def obtain(self, data_root, cache_root, target):
        from torchvision.datasets.utils import download_and_extract_archive

        tv = self.tv_class
        try:
            download_and_extract_archive(tv.url, str(target), filename=self.archive, md5=tv.tgz_md5,
                                         remove_finished=True)
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, md5 RuntimeError
            raise DatasetMissingError(
                f"{self.name}: downloading {tv.url} failed ({exc}); download it by hand and "
                f"extract it into {data_root}") from None

    def decode(self, location, cache_root, memo):
        self.verify(location, memo)
        arrays = {}
        for split in ("train", "test"):
            try:
                ds = self.tv_class(root=str(location.parent), train=split == "train", download=False)
            except Exception as exc:  # noqa: BLE001 - pickle/shape errors in a damaged batch
                raise DatasetCorruptError(
                    f"{location}: cannot read the {split} batches ({exc}); replace the folder "
                    f"with the official {self.archive}") from None
            # torchvision keeps N x H x W x C numpy arrays; the loader wants N x C x H x W.
            arrays[f"{split}_x"] = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            arrays[f"{split}_y"] = torch.as_tensor(ds.targets, dtype=torch.int64)
        return Decoded(self.spec, verified=True, verification="md5, torchvision's list", **arrays)


# From /work/shared/datasets/SOURCES.md: the digest hashes, for every file in sorted order of
# its path relative to CIFAR10-JPEG/ (e.g. "train/airplane/0000.jpg"), that path then its bytes.
CIFAR10_JPEG_EXPECTED = FolderExpectation(
    per_class={"train": 5000, "test": 1000},
    sha256={
        "train": "23f6f435acf80b2820d281bffb7054a4cc07f8f622231da42de3596556762629",
        "test": "086796e30d00a7cf61152af2ac1419d4e4ff83fff4602bc655af2e0b1cb9f8f4",
    },
)


def cifar10_jpeg_source(name: str = "cifar10_jpeg") -> Source:
    """The JPEG mirror of CIFAR-10: an image folder held to SOURCES.md's file counts and digests."""
    return ImageFolderSource(name, None, registered_spec(name), CIFAR10_JPEG_EXPECTED,
                             subdir="CIFAR10-JPEG")


def source_for(name: str) -> Source:
    """The :class:`Source` of a canonical dataset name (see ``resolve_dataset_name``): the
    registry's (:func:`cnnbench.data.specs.register_dataset`), else an ``imagefolder:PATH``."""
    entry = registered_entry(name)
    if entry is not None:
        if callable(entry.source):
            return entry.source()
        builder, keywords = entry.source  # a built-in: a builder of this module, by name
        return globals()[builder](name, **keywords)
    path = imagefolder_path(name)
    if path is None:
        raise UserError(f"unknown dataset {name!r}")
    return ImageFolderSource(name, path)
