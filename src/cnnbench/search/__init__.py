"""Hyper-parameter searches with Optuna (``cnnbench search``): :func:`run_search` over a
space read by :func:`load_space`. Optuna is an optional extra (``cnnbench[search]``),
imported only when a search runs."""

from __future__ import annotations

from cnnbench.lazy import lazy_names

_WHERE = {"run_search": "runner", "load_space": "space", "parse_space": "space", "Param": "space"}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
