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

import torch

from cnnbench.data.cache import (
    Md5Memo, TensorCache, ensure_writable_dir, is_writable_dir, resolve_cache_dir, resolve_data_dir,
)
from cnnbench.data.errors import DatasetCorruptError, DatasetMissingError
from cnnbench.data.sources import network_available, source_for
from cnnbench.data.specs import DatasetSpec, registered_spec, resolve_dataset_name

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


def _prepare(name: str, data_dir, cache_dir, download: bool) -> _Prepared:
    """Make sure a valid cache entry exists for ``name``; return where it is and its metadata."""
    canonical = resolve_dataset_name(name)
    source = source_for(canonical)
    data_root = resolve_data_dir(data_dir)
    cache_root = resolve_cache_dir(cache_dir)
    location = source.locate(data_root, cache_root)
    if location is None and source.unpack_local(data_root, cache_root):
        location = source.locate(data_root, cache_root)
    if location is None:
        if not (download and source.probe_url and network_available(source.probe_url)):
            raise DatasetMissingError(source.missing_message(data_root))
        # Download into the data root when we may write there; a shared root stays untouched.
        target = data_root if is_writable_dir(data_root) else cache_root / "downloads"
        log.warning("cnnbench: %s: downloading into %s", canonical, target)
        source.obtain(data_root, cache_root, target)
        location = source.locate(data_root, cache_root)
        if location is None:
            raise DatasetMissingError(source.missing_message(data_root))

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

    ``data_dir``: data root (else ``$CNNBENCH_DATA``, else ``./data``); only read, unless a
    download is needed and it is writable. ``cache_dir``: cache root (else ``$CNNBENCH_CACHE``,
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
