"""The model zoo's names and cost tables, readable without importing torch.

``cnnbench models``, shell completion and the command line's help need every model's name,
family, study, parameters and MACs, but building the models needs torch (seconds to import).
``catalog.json`` beside this module holds what :func:`build` computes from the registry:

- ``models``: each registered model's name, family and study, in :func:`list_models` order;
- ``tables``: :func:`cnnbench.models.profile.model_rows` of every model at each distinct input of
  the registered datasets (``"3x32x32/10/auto"``: C x H x W, classes, stem), and ``"reports"``:
  the lab reports' networks at their studies' inputs
  (:func:`cnnbench.studies.report_model_rows`).

It is a cache, never the authority: it records a hash of the files it is computed from (the
model modules, the dataset registry, the study files), and :func:`load` returns ``None`` when
any of them changed since, so the callers compute with torch instead. After changing a model,
regenerate it with ``python -m cnnbench.studies.catalog`` (the writer lives with the studies,
which the ``reports`` table reads: this module stays below them); ``tests/models/test_catalog.py``
fails until then.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.json")
_PACKAGE = Path(__file__).resolve().parents[1]  # src/cnnbench


def _sources() -> list[Path]:
    """The files the catalog is computed from, in a fixed order."""
    models = sorted(p for p in (_PACKAGE / "models").glob("*.py") if p.name != "catalog.py")
    return models + [_PACKAGE / "data" / "specs.py"] + sorted((_PACKAGE / "studies").glob("*.yaml"))


def source_hash() -> str:
    """SHA-256 over the names and contents of :func:`_sources`."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def table_key(shape: tuple[int, int, int], classes: int, stem: str) -> str:
    """The key of a cost table: ``"3x32x32/10/auto"``."""
    return f"{'x'.join(str(s) for s in shape)}/{classes}/{stem}"


@functools.cache
def load() -> dict | None:
    """The catalog, or ``None`` when it is missing, unreadable or older than its sources."""
    try:
        catalog = json.loads(CATALOG_FILE.read_text())
    except (OSError, ValueError):
        return None
    return catalog if catalog.get("source_hash") == source_hash() else None


def model_names() -> list[str] | None:
    """Every registered model's name (``list_models()`` order), or ``None`` without a catalog."""
    catalog = load()
    return None if catalog is None else [m["name"] for m in catalog["models"]]


def rows(key: str, pattern: str = "*", reports: bool = False) -> list[dict] | None:
    """The stored rows of table ``key`` (:func:`table_key`, or ``"reports"``) whose model name
    matches ``pattern`` (as :func:`list_models`), only the reports' networks if ``reports``;
    ``None`` when the catalog or the table is missing."""
    catalog = load()
    if catalog is None or key not in catalog["tables"]:
        return None
    pattern = pattern.lower()
    return [row for row in catalog["tables"][key]
            if fnmatch.fnmatchcase(row["name"].lower(), pattern) and (row["study"] or not reports)]
