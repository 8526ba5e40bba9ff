"""Where data lives and what we remember about it: data root, cache root, cached tensors,
and remembered md5 results.

The data root is only ever read (it may be a shared, read-only folder). Everything cnnbench
writes goes under the cache root: decoded tensors (``datasets/``), downloads when the data root
is not writable (``downloads/``) and checksum results (``verified.json``). Every write is atomic
(temporary file + ``os.replace``), because several processes may share one cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path

import torch

from cnnbench.errors import UserError

# Bump when the cached tensor layout or decoding changes: old entries are then ignored.
CACHE_FORMAT = 2


def shared_data_dir() -> Path | None:
    """The ``shared/datasets`` folder beside a source checkout of cnnbench (a class's or a
    lab's read-only copy of the datasets, next to every student's clone), if there is one."""
    checkout = Path(__file__).resolve().parents[3]  # <checkout>/src/cnnbench/data/cache.py
    shared = checkout.parent / "shared" / "datasets"
    if (checkout / "pyproject.toml").is_file() and shared.is_dir():
        return shared
    return None


DATA_RULE = ("--data-dir (or data_dir=), else $CNNBENCH_DATA (folders separated by "
             f"{os.pathsep!r}), else ./data, then the shared/datasets folder beside the checkout")


def data_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders a dataset is looked for in, in order, the same for every entry point
    (``cnnbench``, ``python -m cnnbench``, ``torchrun``, ``./run.sh``, the Python API):
    ``data_dir`` if given (only it), else the folders of ``$CNNBENCH_DATA`` (only they), else
    ``./data`` then :func:`shared_data_dir`. Each dataset is read from the first that holds it;
    a download goes into the first (:func:`resolve_data_dir`)."""
    if data_dir:
        chosen = [data_dir]
    elif os.environ.get("CNNBENCH_DATA"):
        chosen = [p for p in os.environ["CNNBENCH_DATA"].split(os.pathsep) if p]
    else:
        chosen = ["data", *filter(None, [shared_data_dir()])]
    return [Path(p).expanduser().absolute() for p in chosen]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The first data root (:func:`data_roots`): where a download goes (absolute path)."""
    return data_roots(data_dir)[0]


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache root: ``cache_dir``, else ``$CNNBENCH_CACHE``, else ``~/.cache/cnnbench``."""
    chosen = cache_dir or os.environ.get("CNNBENCH_CACHE") or "~/.cache/cnnbench"
    return Path(chosen).expanduser().absolute()


def ensure_writable_dir(path: Path, what: str) -> Path:
    """Create ``path`` if needed; a folder we cannot write to is a user error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the {what} {path} ({exc.strerror}); "
                        f"choose another with --cache-dir or $CNNBENCH_CACHE") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"the {what} {path} is not writable; "
                        f"choose another with --cache-dir or $CNNBENCH_CACHE")
    return path


def is_writable_dir(path: Path) -> bool:
    """Whether ``path`` is a folder we may write into (or could create).

    A folder without any write permission bit counts as read-only even for root, for whom
    ``os.access`` always says yes: a shared data folder marked read-only must stay untouched.
    """
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK) and bool(probe.stat().st_mode & 0o222)


def read_json(path: str | Path) -> dict:
    """The JSON object in ``path``; ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def scratch_dir(cache_root: Path) -> tempfile.TemporaryDirectory:
    """A temporary folder inside the cache (never in the data root), removed on exit."""
    base = ensure_writable_dir(cache_root / "tmp", "cache folder")
    return tempfile.TemporaryDirectory(dir=base)


def fingerprint(*parts) -> str:
    """Stable hex digest of JSON-able parts (file names, sizes, mtimes, checksums, format)."""
    blob = json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def stat_key(path: Path) -> list:
    """What identifies one version of a file without reading it: size and mtime."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class Md5Memo:
    """md5 results remembered in ``<cache>/verified.json``, keyed by path, size and mtime.

    Hashing CIFAR-10's 170 MB on every ``cnnbench datasets`` would be slow; a file whose size
    and mtime are unchanged is not read again.
    """

    def __init__(self, cache_root: Path):
        self.path = cache_root / "verified.json"
        self.entries: dict = read_json(self.path)
        self.dirty = False

    def md5(self, file: Path) -> str:
        """md5 hex digest of ``file`` (torchvision's ``calculate_md5``), remembered."""
        key = str(file.absolute())
        stamp = stat_key(file)
        hit = self.entries.get(key)
        if hit and hit.get("stat") == stamp:
            return hit["md5"]
        from torchvision.datasets.utils import calculate_md5  # lazy: torchvision imports take ~1.5 s

        digest = calculate_md5(file)
        self.entries[key] = {"stat": stamp, "md5": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        """Persist new results; a cache we cannot write only costs speed, never correctness."""
        if not self.dirty:
            return
        try:
            current = read_json(self.path)  # merged with what other processes wrote meanwhile
            current.update(self.entries)
            atomic_write_bytes(self.path, json.dumps(current, indent=0, sort_keys=True).encode())
            self.dirty = False
        except OSError:
            pass


class TensorCache:
    """Decoded datasets: ``<cache>/datasets/<stem>-<key>.pt`` (tensors) + ``.json`` (metadata).

    ``stem`` names the dataset and its location; ``key`` fingerprints the source files, so a
    changed source invalidates the entry. The JSON is written last and is what marks an entry
    complete, and it lets ``cnnbench datasets`` report sizes without loading any tensor.
    """

    def __init__(self, cache_root: Path):
        self.dir = cache_root / "datasets"

    def paths(self, stem: str, key: str) -> tuple[Path, Path]:
        base = f"{stem}-{key[:16]}"
        return self.dir / f"{base}.pt", self.dir / f"{base}.json"

    def read_meta(self, stem: str, key: str) -> dict | None:
        tensors, meta = self.paths(stem, key)
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        if data.get("key") != key or not tensors.exists():
            return None
        return data

    def write(self, stem: str, key: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        ensure_writable_dir(self.dir, "cache folder")
        tensor_path, meta_path = self.paths(stem, key)
        atomic_torch_save(tensors, tensor_path)
        atomic_write_bytes(meta_path, json.dumps({**meta, "key": key}, indent=1).encode())
        # Entries for older versions of the same source are dead weight: drop them.
        for old in self.dir.glob(f"{stem}-*"):
            if old not in (tensor_path, meta_path) and old.suffix in (".pt", ".json"):
                old.unlink(missing_ok=True)

    def load_tensors(self, stem: str, key: str) -> dict[str, torch.Tensor] | None:
        tensor_path, _ = self.paths(stem, key)
        try:
            # weights_only: a cache file can hold tensors, never code.
            return torch.load(tensor_path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - an unreadable cache entry is simply rebuilt
            return None
