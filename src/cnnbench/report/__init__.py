"""The comparison report: tables and matplotlib figures from run directories.

``write_report(paths, out)`` -> ``report.md`` + ``figures/``, a self-contained
``report.html``, ``results.csv`` and ``reproduction.csv``; see :mod:`cnnbench.report.write`.
"""

from cnnbench.report.write import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
