"""Reading ``PATH/{train,test}/<class>/*.png|jpg`` folders into one uint8 tensor.

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

from cnnbench.data.errors import DatasetCorruptError, DatasetMissingError

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
