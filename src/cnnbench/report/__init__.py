"""The comparison report: tables and matplotlib figures from run directories.

``write_report(paths, out)`` -> ``report.md`` + ``figures/``, a self-contained
``report.html``, ``results.csv`` and ``reproduction.csv``; see :mod:`cnnbench.report.write`.
The names load on first use, so a module that needs only :mod:`cnnbench.report.document` or
:mod:`cnnbench.report.figures` (a search's report) does not import SciPy's statistics.
"""

from __future__ import annotations

from cnnbench.lazy import lazy_names

_WHERE = {"ReportFiles": "write", "write_report": "write"}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
