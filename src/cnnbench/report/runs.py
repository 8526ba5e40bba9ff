"""Reading run directories for the report, and grouping the seeds of one run.

A run directory (docs/architecture.md, "Runs") holds ``config.yaml``, ``metrics.jsonl``,
``train_steps.jsonl``, ``summary.json``, on failure ``error.txt``, when the study runner
made it ``study.json``, and optionally ``misclassified.pt`` (written by
:func:`cnnbench.training.rundir.save_misclassified`: a ``weights_only`` tensor dict of
misclassified test images, ``images`` uint8 N,C,H,W, ``pred``, ``true`` and ``index`` int64 N).
Every file is optional here: a run that failed early still gets its row.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from cnnbench.errors import UserError
from cnnbench.training.rundir import (CONFIG, METRICS, MISCLASSIFIED, STUDY, SUMMARY, read_json,
                                     read_jsonl, read_yaml)

RUN_FILES = (SUMMARY, CONFIG, METRICS, STUDY)  # any of them marks a run directory

# Config keys that differ between the seeds of one run without making it another run.
_PER_SEED_KEYS = {"seed", "out", "name", "data_dir", "cache_dir", "init", "log_every"}


@dataclass
class RunRecord:
    """Everything the report uses from one run directory."""

    path: Path
    config: dict
    summary: dict
    metrics: list[dict]
    steps: list[dict]
    study: dict
    error: str | None

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        error_file = path / "error.txt"
        return cls(path=path, config=read_yaml(path / "config.yaml"),
                   summary=read_json(path / "summary.json"),
                   metrics=read_jsonl(path / "metrics.jsonl"),
                   steps=read_jsonl(path / "train_steps.jsonl"),
                   study=read_json(path / "study.json"),
                   error=error_file.read_text(errors="replace") if error_file.exists() else None)

    def get(self, key: str, default=None):
        """A value from summary.json, else config.yaml, else the study's options."""
        for source in (self.summary, self.config, self.study.get("options") or {}):
            if source.get(key) is not None:
                return source[key]
        return default

    @property
    def name(self) -> str:
        return self.study.get("name") or self.summary.get("name") or self.path.name

    @property
    def status(self) -> str:
        if self.summary.get("status"):
            return str(self.summary["status"])
        return "failed" if self.error else ("running" if self.metrics else "not run")

    @property
    def profile(self) -> str | None:
        return self.summary.get("profile") or self.study.get("profile") or self.config.get("profile")

    @property
    def limited(self) -> bool:
        if "limited" in self.summary:
            return bool(self.summary["limited"])
        return bool(self.get("limit_train") or self.get("limit_eval"))

    @property
    def study_name(self) -> str:
        return self.study.get("study") or ""

    @property
    def misclassified_path(self) -> Path | None:
        path = self.path / MISCLASSIFIED
        return path if path.exists() else None

    @property
    def error_line(self) -> str:
        text = self.summary.get("error") or (self.error or "").strip()
        lines = [ln for ln in str(text).splitlines() if ln.strip()]
        # a traceback ends with the exception line; a one-line message is itself
        return lines[-1].strip() if lines else ""


@dataclass
class RunGroup:
    """The seeds of one run (one row of the results table)."""

    key: tuple
    records: list[RunRecord] = field(default_factory=list)

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def label(self) -> str:
        if self.first.study.get("run"):
            return self.first.study["run"]
        if len(self.records) == 1:
            return self.first.name
        return re.sub(r"-seed\d+$", "", self.first.name)

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.records if r.status == "finished"]

    def stat(self, key: str) -> tuple[float, float] | None:
        """Mean and std over the finished seeds of a ``summary.json`` number."""
        return mean_std([r.summary.get(key) for r in self.finished])

    @property
    def test_acc(self) -> tuple[float, float] | None:
        return self.stat("test_acc")

    @property
    def best_val_acc(self) -> tuple[float, float] | None:
        return self.stat("best_val_acc")

    @property
    def status(self) -> str:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        if set(counts) == {"finished"}:
            return "finished"
        if len(self.records) == 1:
            return self.first.status
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

    @property
    def reference(self) -> dict | None:
        return self.first.study.get("reference")

    def cnnbench_value(self) -> float | None:
        """The mean accuracy (fraction) to set beside the reference: test or best val."""
        ref = self.reference
        ms = self.best_val_acc if ref and ref.get("metric") == "val_acc" else self.test_acc
        return ms[0] if ms else None


def mean_std(values) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value) of the values that are set."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def reference_difference(value_pct: float | None, reference: dict | None) -> float | None:
    """cnnbench minus report, in percentage points; 0 inside a published range."""
    if value_pct is None or not reference or reference.get("value") is None:
        return None
    ref = reference["value"]
    if isinstance(ref, (list, tuple)):
        low, high = float(ref[0]), float(ref[1])
        return 0.0 if low <= value_pct <= high else (
            value_pct - high if value_pct > high else value_pct - low)
    return value_pct - float(ref)


# --------------------------------------------------------------------------- finding runs

def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories among ``paths``: each path is one, or is searched below for them."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UserError(f"{path} is not a directory; pass run directories or a study's "
                            "--out directory")
        below = [path] if is_run_dir(path) else _search(path)
        if not below:
            raise UserError(f"no run directories in {path} (a run directory holds "
                            "summary.json or config.yaml)")
        found.extend(p for p in below if p not in found)
    return found


def is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES)


def _search(root: Path) -> list[Path]:
    runs = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child.name == "figures":
            continue
        runs.extend([child] if is_run_dir(child) else _search(child))
    return runs


def load_runs(paths: list[str | Path]) -> list[RunRecord]:
    """The runs in ``paths``; a study's runs in the order of its file."""
    records = [RunRecord.load(p) for p in find_run_dirs(paths)]
    return sorted(records, key=lambda r: r.study.get("position", 0))  # stable: dirs keep order


def group_runs(records: list[RunRecord]) -> list[RunGroup]:
    """Group the seeds of each run, keeping the order in which runs first appear.

    Runs made by the study runner group by (study, run name); any other runs group when
    their configs are equal apart from the seed (and paths).
    """
    groups: dict[tuple, RunGroup] = {}
    for record in records:
        if record.study.get("run"):
            key = ("study", record.study.get("study"), record.study["run"])
        else:
            config = {k: v for k, v in record.config.items() if k not in _PER_SEED_KEYS}
            key = ("config", json.dumps(config, sort_keys=True, default=str)) if config else (
                "dir", str(record.path))
        groups.setdefault(key, RunGroup(key)).records.append(record)
    return list(groups.values())
