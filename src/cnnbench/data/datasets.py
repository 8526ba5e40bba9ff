"""``load_dataset``: find, verify (once), decode (once), cache and load a dataset; ``get_spec``.

First load of a dataset: locate its files (data root, then the cache's ``downloads/``),
download them if missing and a network answers, verify them (md5, counts, sha256), decode to
uint8 tensors and save those in the cache. Every later load: stat the source files, and if
nothing changed, ``torch.load`` the cached tensors (MNIST: a few tens of milliseconds).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnbench.data.cache import (
    DATA_RULE, Md5Memo, TensorCache, data_roots, ensure_writable_dir, is_writable_dir,
    resolve_cache_dir, resolve_data_dir,
)
from cnnbench.data.errors import DatasetCorruptError, DatasetMissingError
from cnnbench.data.sources import network_available, source_for
from cnnbench.data.specs import (DatasetSpec, list_datasets, registered_spec, resolve_dataset_name,
                                 stands_in_for, variants)

log = logging.getLogger("cnnbench.data")


@dataclass
class LoadedDataset:
    """A decoded dataset: uint8 ``N x C x H x W`` images and int64 labels per split.

    ``location`` is the folder the files were read from; ``verified`` says whether they matched
    published checksums (``verification`` says which); ``notes`` are warnings from decoding
    (e.g. resized images).
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    location: str = ""
    verified: bool = False
    verification: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class _Prepared:
    cache: TensorCache
    stem: str
    key: str
    meta: dict


def find_dataset(name: str, data_dir=None, cache_dir=None) -> Path | None:
    """The folder holding ``name``'s files: the first of :func:`data_roots` that holds them
    (or the cache's ``downloads/``), extracting an archive placed there; ``None`` if none does."""
    source = source_for(resolve_dataset_name(name))
    cache_root = resolve_cache_dir(cache_dir)
    for root in data_roots(data_dir):
        location = source.locate(root, cache_root)
        if location is None and source.unpack_local(root, cache_root):
            location = source.locate(root, cache_root)
        if location is not None:
            return location
    return None


def missing_message(name: str, data_dir=None) -> str:
    """One line: which files of ``name`` are missing where, every folder looked in with the
    datasets it holds, and a registered stand-in that is found (``cifar10`` -> ``cifar10_jpeg``)."""
    canonical = resolve_dataset_name(name)
    roots = data_roots(data_dir)
    message = source_for(canonical).missing_message(roots[0])
    if registered_spec(canonical) is None:  # an image folder: its own path says it all
        return message

    def held(root: Path) -> list[str]:
        return [n for n in list_datasets() if source_for(n).locate(root, root) is not None]

    looked = "; ".join(f"{root} holds {', '.join(held(root)) or 'none of them'}" for root in roots)
    message += f" [looked in: {looked}; the rule: {DATA_RULE}]"
    for other in variants(canonical)[1:]:
        if find_dataset(other, data_dir):
            message += (f"; {other}, {stands_in_for(other)[1].split(':')[0]}, is there: "
                        f"--dataset {other}")
    return message


def require_dataset(name: str, data_dir=None, cache_dir=None, download: bool = True) -> Path | None:
    """``name``'s folder (:func:`find_dataset`); ``None`` when it is not found but can be
    downloaded (``download`` and a network that answers); else :class:`DatasetMissingError`
    with :func:`missing_message`."""
    location = find_dataset(name, data_dir, cache_dir)
    if location is None:
        source = source_for(resolve_dataset_name(name))
        if not (download and source.probe_url and network_available(source.probe_url)):
            raise DatasetMissingError(missing_message(name, data_dir))
    return location


def _prepare(name: str, data_dir, cache_dir, download: bool) -> _Prepared:
    """Make sure a valid cache entry exists for ``name``; return where it is and its metadata."""
    canonical = resolve_dataset_name(name)
    source = source_for(canonical)
    data_root = resolve_data_dir(data_dir)
    cache_root = resolve_cache_dir(cache_dir)
    location = require_dataset(canonical, data_dir, cache_dir, download)
    if location is None:
        # Download into the data root when we may write there; a shared root stays untouched.
        target = data_root if is_writable_dir(data_root) else cache_root / "downloads"
        log.warning("cnnbench: %s: downloading into %s", canonical, target)
        source.obtain(data_root, cache_root, target)
        location = source.locate(data_root, cache_root)
        if location is None:
            raise DatasetMissingError(missing_message(canonical, data_dir))

    cache = TensorCache(cache_root)
    stem, key = source.cache_stem(location), source.fingerprint(location)
    meta = cache.read_meta(stem, key)
    if meta is not None:
        return _Prepared(cache, stem, key, meta)

    ensure_writable_dir(cache_root, "cache folder")
    log.info("cnnbench: %s: verifying and decoding %s into %s (once)", canonical, location, cache_root)
    started = time.perf_counter()
    memo = Md5Memo(cache_root)
    try:
        decoded = source.decode(location, cache_root, memo)
    finally:
        memo.save()
    for note in decoded.notes:  # e.g. resized images: the user is told once, at decode time
        log.warning("cnnbench: warning: %s", note)
    meta = {
        "spec": decoded.spec.to_dict(),
        "location": str(location),
        "verified": decoded.verified,
        "verification": decoded.verification,
        "notes": decoded.notes,
        "sizes": {"train": len(decoded.train_y), "test": len(decoded.test_y)},
        "decode_seconds": round(time.perf_counter() - started, 3),
    }
    tensors = {"train_x": decoded.train_x, "train_y": decoded.train_y,
               "test_x": decoded.test_x, "test_y": decoded.test_y}
    cache.write(stem, key, tensors, meta)
    return _Prepared(cache, stem, key, {**meta, "key": key})


def load_dataset(name: str, data_dir=None, cache_dir=None, download: bool = True) -> LoadedDataset:
    """Load ``name`` as uint8 tensors, decoding it into the cache on first use.

    ``data_dir``: data root (else ``$CNNBENCH_DATA``, else ``./data`` then the shared folder
    beside the checkout: :func:`cnnbench.data.cache.data_roots`); only read, unless a download
    is needed and the first root is writable. ``cache_dir``: cache root (else ``$CNNBENCH_CACHE``,
    else ``~/.cache/cnnbench``). ``download``: fetch missing files with torchvision when a
    network answers. Missing or corrupt files raise :class:`cnnbench.errors.UserError` (the
    subclasses ``DatasetMissingError``/``DatasetCorruptError``) naming the file.
    """
    prepared = _prepare(name, data_dir, cache_dir, download)
    tensors = prepared.cache.load_tensors(prepared.stem, prepared.key)
    if tensors is None:  # cache entry vanished or damaged between the check and the load
        prepared.cache.paths(prepared.stem, prepared.key)[1].unlink(missing_ok=True)
        prepared = _prepare(name, data_dir, cache_dir, download)
        tensors = prepared.cache.load_tensors(prepared.stem, prepared.key)
        if tensors is None:
            raise DatasetMissingError(f"cannot read the cached tensors of {name} in "
                                      f"{prepared.cache.dir}; delete that folder and retry")
    meta = prepared.meta
    return LoadedDataset(
        spec=DatasetSpec.from_dict(meta["spec"]), location=meta["location"],
        verified=meta["verified"], verification=meta["verification"], notes=list(meta["notes"]),
        **tensors,
    )


def dataset_info(name: str, data_dir=None, cache_dir=None) -> dict:
    """What ``cnnbench datasets`` shows about one dataset, never downloading.

    Decodes into the cache if that has not happened yet (so the sizes are real), but loads no
    tensors. Returns a dict with ``name, status ("found"|"missing"|"corrupt"), verified,
    verification, location, train, test, message, notes`` and, when found, ``spec``.
    """
    canonical = resolve_dataset_name(name)
    info = {"name": canonical, "status": "found", "verified": False, "verification": "",
            "location": None, "train": None, "test": None, "message": None, "notes": []}
    try:
        meta = _prepare(canonical, data_dir, cache_dir, download=False).meta
    except DatasetMissingError as exc:
        return {**info, "status": "missing", "message": str(exc)}
    except DatasetCorruptError as exc:
        return {**info, "status": "corrupt", "message": str(exc)}
    return {**info, "verified": meta["verified"], "verification": meta["verification"],
            "location": meta["location"], "train": meta["sizes"]["train"],
            "test": meta["sizes"]["test"], "notes": meta["notes"], "spec": meta["spec"]}


def get_spec(name: str, *, data_dir=None, cache_dir=None) -> DatasetSpec:
    """The :class:`DatasetSpec` of a dataset.

    Built-in datasets need no files (their specs are the table in :mod:`cnnbench.data.specs`).
    ``imagefolder:PATH`` is read (decoded once into the cache, like :func:`load_dataset`, never
    downloading), because its classes, image size and mean/std come from the images;
    ``data_dir``/``cache_dir`` are only used for it.
    """
    canonical = resolve_dataset_name(name)
    spec = registered_spec(canonical)
    if spec is not None:
        return spec
    return DatasetSpec.from_dict(_prepare(canonical, data_dir, cache_dir, download=False).meta["spec"])
