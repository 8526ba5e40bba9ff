"""Packages whose names load on first use (PEP 562), so that importing one costs nothing.

``cnnbench.data``, ``cnnbench.models`` and ``cnnbench.studies`` hand out names defined in their
modules, some of which import torch; the command line's ``--help``, ``models`` and ``study list``
must not pay for that (tests/test_cli_startup.py)::

    _WHERE = {"load_dataset": "datasets", ...}      # name -> the module of the package defining it
    __getattr__, __dir__ = lazy_names(__name__, _WHERE)
"""

from __future__ import annotations

import importlib
import sys


def lazy_names(package: str, where: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``: a name of ``where`` is imported from
    ``package.<where[name]>`` when first asked for, then kept in the package."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
