"""Image folders, ``PATH/{train,test}/<class>/*.png|jpg``: read into one uint8 tensor, and the
:class:`ImageFolderSource` of ``imagefolder:PATH`` and ``cifar10_jpeg``.

JPEGs are decoded by torchvision's libjpeg decoder in chunks (the 60,000 files of
``cifar10_jpeg`` take a few seconds); other formats go through ``decode_image``. Grayscale and
RGB may be mixed: the dataset is RGB as soon as one image is. Images whose size differs from
the dataset's (declared, else most common) size are resized, and the user is told.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnbench.data.cache import fingerprint
from cnnbench.data.errors import DatasetCorruptError, DatasetMissingError
from cnnbench.data.source_base import Decoded, Source
from cnnbench.data.specs import DatasetSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_CHUNK = 2048  # files read and decoded at a time: bounds memory for large folders


class ImageFolderScan:
    """The file list of an image folder: ``files`` is ``[(split, relative path, label)]`` sorted
    by relative path (``"train/cat/0001.jpg"``), which is also the sha256 order of SOURCES.md.

    ``classes`` fixes the class names and their order (``cifar10_jpeg``); without it they are
    the sorted folder names under ``train/``.
    """

    def __init__(self, root: Path, classes: tuple[str, ...] | None = None):
        self.root = root
        found = sorted(e.name for e in os.scandir(root / "train")
                       if e.is_dir() and not e.name.startswith("."))
        test_classes = sorted(e.name for e in os.scandir(root / "test")
                              if e.is_dir() and not e.name.startswith("."))
        if classes is not None:
            unknown = sorted(set(found + test_classes) - set(classes))
            if unknown:
                raise DatasetCorruptError(f"{root}: unexpected class folders {', '.join(unknown)}; "
                                f"expected only {', '.join(classes)}")
            self.classes = list(classes)
        else:
            extra = sorted(set(test_classes) - set(found))
            if extra:
                raise DatasetCorruptError(f"{root}/test has classes missing from {root}/train: "
                                f"{', '.join(extra)}; every test class needs training images")
            self.classes = found
        index = {name: i for i, name in enumerate(self.classes)}
        self.files: list[tuple[str, str, int]] = []
        self._stats: list[list] = []
        self.ignored = 0
        for split in ("train", "test"):
            for name in self.classes:
                folder = root / split / name
                if not folder.is_dir():
                    continue
                for entry in os.scandir(folder):
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    if not entry.name.lower().endswith(IMAGE_SUFFIXES):
                        self.ignored += 1
                        continue
                    rel = f"{split}/{name}/{entry.name}"
                    st = entry.stat()
                    self.files.append((split, rel, index[name]))
                    self._stats.append([rel, st.st_size, st.st_mtime_ns])
        order = sorted(range(len(self.files)), key=lambda i: self.files[i][1])
        self.files = [self.files[i] for i in order]
        self._stats = [self._stats[i] for i in order]

    def entries(self) -> list[list]:
        """``[relative path, size, mtime_ns]`` of every image: the cache fingerprint."""
        return self._stats

    def require_images(self) -> None:
        """Both splits must hold at least one image."""
        for split in ("train", "test"):
            if not any(s == split for s, _, _ in self.files):
                raise DatasetMissingError(f"{self.root / split} holds no images; expected "
                                f"{self.root / split}/<class>/*.png|jpg")

    def count_problems(self, per_class: dict[str, int]) -> str:
        """Empty if every ``split/class`` holds ``per_class[split]`` files, else a description."""
        counts = Counter(rel.rsplit("/", 1)[0] for _, rel, _ in self.files)
        wrong = [f"{split}/{name}: {counts.get(f'{split}/{name}', 0)} files, expected {n}"
                 for split, n in per_class.items() for name in self.classes
                 if counts.get(f"{split}/{name}", 0) != n]
        return "; ".join(wrong[:3]) + (f"; and {len(wrong) - 3} more" if len(wrong) > 3 else "")


@dataclass
class DecodedImages:
    images: torch.Tensor  # N x C x H x W uint8, in the order of the file list
    size: tuple[int, int]
    sha256: dict[str, str] = field(default_factory=dict)  # split -> digest (if asked for)
    notes: list[str] = field(default_factory=list)


def _unreadable(path: Path, exc: Exception) -> DatasetCorruptError:
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    reason = reason.rsplit(", ", 1)[-1]  # drop torchvision's C++ source location
    return DatasetCorruptError(f"cannot decode image {path} ({reason}); it was not used: "
                               f"replace or delete the file")


def _decode_chunk(root: Path, rels: list[str], blobs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Decode one chunk: JPEGs in one batched call, the rest one by one; name any bad file."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(rels)
    jpeg = [i for i, rel in enumerate(rels) if rel.lower().endswith(_JPEG_SUFFIXES)]
    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated in favour of torchcodec; they work.
        warnings.simplefilter("ignore", DeprecationWarning)
        if jpeg:
            try:
                for i, img in zip(jpeg, decode_jpeg([blobs[i] for i in jpeg], mode=ImageReadMode.UNCHANGED)):
                    out[i] = img
            except RuntimeError:
                pass  # one bad (or mis-named) file: fall through to one-by-one to find it
        for i, img in enumerate(out):
            if img is None:
                try:
                    out[i] = decode_image(blobs[i], mode=ImageReadMode.UNCHANGED)
                except RuntimeError as exc:
                    raise _unreadable(root / rels[i], exc) from None
    return out  # type: ignore[return-value]


def _to_channels(img: torch.Tensor, channels: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    if img.dtype != torch.uint8:  # 16-bit PNG
        img = TF.to_dtype(img, torch.uint8, scale=True)
    c = img.shape[0]
    if c in (2, 4):  # drop alpha, as PIL's convert() does
        img = img[: c - 1]
        c -= 1
    if c == channels:
        return img
    if channels == 3:  # grayscale -> RGB: the same value in each channel
        return img.expand(3, -1, -1)
    return TF.rgb_to_grayscale(img)


def decode_image_files(root: Path, files: list[tuple[str, str, int]], *,
                       declared_size: tuple[int, int] | None = None, channels: int | None = None,
                       hash_splits: bool = False) -> DecodedImages:
    """Decode every file of ``files`` (from :class:`ImageFolderScan`) into one uint8 tensor.

    ``declared_size``/``channels`` fix the output; otherwise the most common size wins and the
    output is RGB if any image is colour. With ``hash_splits`` the sha256 of each split over
    (relative path, bytes), in file order, is computed on the way.
    """
    hashes = {split: hashlib.sha256() for split in ("train", "test")} if hash_splits else {}
    decoded: list[torch.Tensor] = []
    for start in range(0, len(files), _CHUNK):
        chunk = files[start:start + _CHUNK]
        blobs = []
        for split, rel, _ in chunk:
            path = root / rel
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DatasetCorruptError(f"cannot read image {path} ({exc.strerror})") from None
            if hash_splits:
                hashes[split].update(rel.encode())
                hashes[split].update(data)
            if not data:
                raise _unreadable(path, ValueError("empty file"))
            blobs.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        decoded.extend(_decode_chunk(root, [rel for _, rel, _ in chunk], blobs))

    sizes = Counter(tuple(img.shape[-2:]) for img in decoded)
    # Most common size; ties go to the larger image so that nothing is needlessly shrunk.
    size = tuple(declared_size) if declared_size else max(sizes, key=lambda s: (sizes[s], s))
    if channels is None:
        channels = 3 if any(img.shape[0] >= 3 for img in decoded) else 1
    notes = []
    odd = [i for i, img in enumerate(decoded) if tuple(img.shape[-2:]) != size]
    if odd:
        first = decoded[odd[0]]
        notes.append(
            f"{root}: {len(odd)} of {len(decoded)} images are not {size[0]}x{size[1]} (HxW) and "
            f"were resized to it (e.g. {files[odd[0]][1]}, {first.shape[-2]}x{first.shape[-1]})")
    images = torch.empty((len(decoded), channels, *size), dtype=torch.uint8)
    for i, img in enumerate(decoded):
        img = _to_channels(img, channels)
        if tuple(img.shape[-2:]) != size:
            from torchvision.transforms.v2.functional import resize

            img = resize(img, list(size), antialias=True)
        images[i] = img
    return DecodedImages(images, size, {s: h.hexdigest() for s, h in hashes.items()}, notes)


@dataclass(frozen=True)
class FolderExpectation:
    """What a known image folder must look like (file counts per class, optional sha256)."""

    per_class: dict[str, int]  # split -> files per class
    sha256: dict[str, str]  # split -> digest over (relative path, bytes) of every file, sorted


class ImageFolderSource(Source):
    """``PATH/{train,test}/<class>/*.png|jpg``: ``imagefolder:PATH`` and ``cifar10_jpeg``.

    With a fixed ``spec`` (``cifar10_jpeg``) the classes and image size are those of the spec
    and ``expected`` is checked; without one the folder defines classes, size and mean/std.
    """

    def __init__(self, name: str, path: Path | None, spec: DatasetSpec | None = None,
                 expected: FolderExpectation | None = None, subdir: str | None = None):
        self.name = name
        self.path = path  # None: relative to the data root (``subdir``)
        self.subdir = subdir
        self.spec = spec
        self.expected = expected

    def _root(self, data_root: Path) -> Path:
        return self.path.absolute() if self.path is not None else data_root / self.subdir

    def locate(self, data_root, cache_root):
        root = self._root(data_root)
        return root if (root / "train").is_dir() and (root / "test").is_dir() else None

    def missing_message(self, data_root):
        root = self._root(data_root)
        absent = [s for s in ("train", "test") if not (root / s).is_dir()]
        where = " and ".join(str(root / s) for s in absent)
        if self.path is None:
            return (f"{self.name}: {where} not found; copy the CIFAR10-JPEG folder "
                    f"({{train,test}}/<class>/*.jpg) into {data_root} or point --data-dir/"
                    f"$CNNBENCH_DATA at the folder holding it (it cannot be downloaded; "
                    f"use cifar10 for the official files)")
        return (f"{self.name}: {where} not found; lay out your images as "
                f"{root}/train/<class>/*.png|jpg and {root}/test/<class>/*.png|jpg")

    def cache_stem(self, location):
        if self.path is None:
            return super().cache_stem(location)
        label = "".join(c if c.isalnum() or c in "-_" else "_" for c in location.name)[:40]
        where = hashlib.sha256(str(location).encode()).hexdigest()[:8]
        return f"imagefolder-{label}-{where}"

    def fingerprint(self, location):
        scan = ImageFolderScan(location, self.spec.classes if self.spec else None)
        self._scan = scan  # reused by decode(): one walk of a 60k-file tree is enough
        return fingerprint(self.name, str(location), scan.entries(),
                           self.spec.to_dict() if self.spec else None)

    def decode(self, location, cache_root, memo):
        scan = getattr(self, "_scan", None) or ImageFolderScan(
            location, self.spec.classes if self.spec else None)
        scan.require_images()
        notes: list[str] = []
        verified, verification = False, "user folder, no published checksum"
        if self.expected is not None:
            counts = scan.count_problems(self.expected.per_class)
            if counts:
                raise DatasetCorruptError(f"{self.name}: {location} is incomplete ({counts}); "
                                          f"copy the complete folder again")
        declared = self.spec.image_size if self.spec else None
        result = decode_image_files(
            location, scan.files, declared_size=declared,
            channels=self.spec.channels if self.spec else None,
            hash_splits=self.expected is not None)
        notes.extend(result.notes)
        if self.expected is not None:
            bad = [s for s, digest in self.expected.sha256.items() if result.sha256[s] != digest]
            verified = not bad
            verification = "file counts + sha256 from SOURCES.md"
            if bad:
                verification = "file counts only: sha256 differs from SOURCES.md"
                notes.append(f"{self.name}: the {'/'.join(bad)} files differ from the published "
                             f"sha256 digest; results may not match other copies of this mirror")
        x = result.images
        train = torch.tensor([split == "train" for split, _, _ in scan.files])
        y = torch.tensor([label for _, _, label in scan.files], dtype=torch.int64)
        train_x, test_x = x[train].contiguous(), x[~train].contiguous()
        spec = self.spec or self._spec_from(location, scan, train_x, result.size)
        return Decoded(spec, train_x, y[train], test_x, y[~train], verified, verification, notes)

    def _spec_from(self, location, scan, train_x, size) -> DatasetSpec:
        mean, std = channel_stats(train_x)
        return DatasetSpec(
            name=self.name, channels=int(train_x.shape[1]), image_size=tuple(size),
            num_classes=len(scan.classes), classes=tuple(scan.classes),
            mean=mean, std=std, source=f"image folder {location}",
            train_size=int(train_x.shape[0]), test_size=len(scan.files) - int(train_x.shape[0]),
        )


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale, in float64 chunks."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk].to(torch.float64).div_(255)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(max(v, 1e-3), 4) for v in std.tolist())
