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
from functools import cached_property
from pathlib import Path

from cnnbench.config import PER_SEED
from cnnbench.errors import UserError
from cnnbench.reference_metrics import REFERENCE_METRICS, TIME_UNITS
from cnnbench.report.departures import recipe_departures
from cnnbench.training.rundir import (CONFIG, METRICS, MISCLASSIFIED, PREDICTIONS, STUDY, SUMMARY,
                                     read_json, read_jsonl, read_yaml)

RUN_FILES = (SUMMARY, CONFIG, METRICS, STUDY)  # any of them marks a run directory


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

    @cached_property
    def predictions(self) -> dict | None:
        """``test_predictions.json`` (``predictions``, ``targets``: class indices per test
        image, ``tested_weights``), read on first use; ``None`` when it is missing, unreadable,
        empty or its two lists differ in length."""
        data = read_json(self.path / PREDICTIONS)
        preds, targets = data.get("predictions"), data.get("targets")
        if not isinstance(preds, list) or not isinstance(targets, list) or not targets \
                or len(preds) != len(targets):
            return None
        return data

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
    def references(self) -> list[dict]:
        """The numbers the lab report published for this run (``study.json``)."""
        return study_references(self.first.study)

    @property
    def differs(self) -> str:
        """How the run departs from the report's recipe, as the study file says ("" if not)."""
        return str(self.first.study.get("differs") or "")

    def quantity(self, metric: str) -> tuple[float, float] | None:
        """Mean and std over the finished seeds of a quantity (:data:`QUANTITIES`), in the
        run files' units (accuracies as fractions, times in seconds)."""
        quantity = QUANTITIES.get(metric)
        return mean_std([quantity.read(r) for r in self.finished]) if quantity else None

    @property
    def capped(self) -> str:
        """Why the run trained on less than the report's recipe, in a few words ("quick",
        "cpu, capped", "limited"); "" for a full-profile run on all the images (or a run made
        outside a study, without a profile, on all the images)."""
        profiles = {r.profile for r in self.records}
        if "quick" in profiles:
            return "quick"
        if "cpu" in profiles:
            return "cpu, capped"
        return "limited" if any(r.limited and not _limits_are_the_recipes(r)
                                for r in self.records) else ""

    def recipe_gaps(self) -> list[str]:
        """Why cnnbench's numbers of this run are not set against the report's: not the
        ``full`` profile, fewer images, or the study's ``differs``; empty when they are."""
        profiles = {r.profile for r in self.records}
        gaps = {"quick": ["quick smoke test"],
                "cpu, capped": ["cpu profile, capped (epochs/images)"],
                "limited": ["trained or evaluated on a subset of the images "
                            "(limit_train / limit_eval)"]}.get(self.capped, [])
        if not gaps and profiles != {"full"}:
            named = sorted(str(p) for p in profiles if p)
            gaps.append(f"profile {'/'.join(named)}, not the study's full recipe" if named
                        else "not run by a study's full profile")
        for record in self.records:  # every seed must be on the recipe
            gaps += [d for d in recipe_departures(record.study) if d not in gaps
                     and not (self.capped and d.startswith("limit_"))]  # said just above
        return gaps + ([self.differs] if self.differs else [])


# ----------------------------------------------------------------- which runs compare

def split_comparable(groups: list[RunGroup]) -> tuple[list[RunGroup], list[RunGroup]]:
    """The report's one rule of what may be compared: ``(comparable, capped)``.

    Comparable runs are on a study's full profile (or outside a study) and all the images
    (:attr:`RunGroup.capped` is ""); every other run (quick, cpu-capped, limited) is a smoke
    test or a capped run. The report never sets a capped run beside a comparable one in a
    comparison figure, a grid cell left unmarked or an ablation's change, nor two capped
    runs against each other in an ablation. Both lists keep the order of ``groups``."""
    return [g for g in groups if not g.capped], [g for g in groups if g.capped]


_CAPPED_ORDER = ("limited", "cpu, capped", "quick")  # least capped first: every RunGroup.capped but ""


def comparison_groups(groups: list[RunGroup]) -> tuple[list[RunGroup], str]:
    """The runs the comparison figures hold, and "" or the kind of capped run they all are.

    The comparable runs (:func:`split_comparable`) when there is one; else the capped runs
    of one kind and profile only (the most numerous; on a tie the least capped), never a mix.
    """
    comparable, capped = split_comparable(groups)
    if comparable or not capped:
        return comparable, ""

    def kind(g: RunGroup) -> tuple[str, tuple[str, ...]]:
        return g.capped, tuple(sorted(str(r.profile or "") for r in g.records))

    kinds: dict[tuple, list[RunGroup]] = {}
    for g in capped:
        kinds.setdefault(kind(g), []).append(g)
    chosen = min(kinds, key=lambda k: (-len(kinds[k]), _CAPPED_ORDER.index(k[0])))
    return kinds[chosen], chosen[0]


def _limits_are_the_recipes(record: RunRecord) -> bool:
    """A study whose own full recipe trains on a subset (``transfer``) is not capped by it."""
    recipe, options = record.study.get("recipe"), record.study.get("options")
    if not isinstance(recipe, dict) or not isinstance(options, dict) or record.profile != "full":
        return False
    keys = ("limit_train", "limit_eval")
    return any(recipe.get(k) for k in keys) and all(options.get(k) == recipe.get(k) for k in keys)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Quantity:
    """A number of a run that a reference can quote: its label in the tables and where
    cnnbench's value is in a run directory (its kind: ``REFERENCE_METRICS``).

    ``where``: ``"summary"`` (``summary.json[key]``), ``"last_epoch"`` (the last epoch's
    ``key`` in ``metrics.jsonl``: the lab reports print the final epoch's numbers),
    ``"epoch_mean"`` (the mean over the epochs), ``"epoch"`` (epoch ``epoch``'s value; 1 is the
    first) or ``"max_epoch_test"`` (the best test accuracy over the epochs of a run that
    evaluated the test set every epoch, ``monitor_test``; ``None`` for a run that did not)."""

    label: str
    where: str  # which file and how (not a lab report's ``source`` line)
    key: str = ""
    epoch: int = 0

    def read(self, record: RunRecord) -> float | None:
        if self.where == "summary":
            return _number(record.summary.get(self.key))
        epochs = [m for m in record.metrics if "epoch" in m]
        values = [v for v in (_number(m.get(self.key)) for m in record.metrics) if v is not None]
        if self.where == "last_epoch":
            return _number(epochs[-1].get(self.key)) if epochs else None
        if self.where == "epoch_mean":
            return statistics.fmean(values) if values else None
        if self.where == "epoch":
            return next((_number(m.get(self.key)) for m in epochs if m["epoch"] == self.epoch), None)
        if self.where == "max_epoch_test":
            value = _number(record.summary.get("max_epoch_test_acc"))
            return value if value is not None else max(values) if values else None
        raise ValueError(f"unknown place {self.where!r}")


# What each metric of a study's `reference:` (cnnbench.reference_metrics) is in cnnbench:
# its label and where its value comes from; the kind is the shared table's.
QUANTITIES: dict[str, Quantity] = {
    "test_acc": Quantity("test acc", "summary", "test_acc"),
    "val_acc": Quantity("val acc (last epoch)", "last_epoch", "val_acc"),
    "best_val_acc": Quantity("best val acc", "summary", "best_val_acc"),
    "max_epoch_test_acc": Quantity(
        "best test acc over epochs (the report's measure; the test set picks the "
        "epoch, optimistic)", "max_epoch_test", "epoch_test_acc"),
    "epoch1_test_acc": Quantity("test acc after epoch 1 (test monitor)", "epoch",
                                "epoch_test_acc", epoch=1),
    "train_acc": Quantity("train acc (last epoch)", "last_epoch", "train_acc"),
    "test_loss": Quantity("test loss", "summary", "test_loss"),
    "val_loss": Quantity("val loss (last epoch)", "last_epoch", "val_loss"),
    "train_loss": Quantity("train loss (last epoch)", "last_epoch", "train_loss"),
    "epoch_time_s": Quantity("time per epoch (mean)", "epoch_mean", "epoch_time_s"),
    "train_time_s": Quantity("training time", "summary", "train_time_s"),
    "params": Quantity("parameters", "summary", "params"),
}


def study_references(study: dict) -> list[dict]:
    """``study.json["reference"]`` as a list of complete references: a list (written since
    references became lists), one mapping or ``null`` (older run directories). Each gets
    its ``metric`` (default ``test_acc``), ``unit`` (times: ``s``) and ``comparable``
    (default: true for accuracies and parameter counts, false for losses and times)."""
    raw = study.get("reference")
    items = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    references = []
    for ref in items:
        if not isinstance(ref, dict) or ref.get("value") is None:
            continue
        metric = ref.get("metric") or "test_acc"
        kind = REFERENCE_METRICS.get(metric, "unknown")
        comparable = ref.get("comparable")
        references.append({
            **ref, "metric": metric, "kind": kind,
            "unit": ref.get("unit") or ("s" if kind == "time" else None),
            "comparable": (kind in ("accuracy", "count")) if comparable is None else bool(comparable)})
    return references


def reference_value(ref: dict) -> float | tuple[float, float]:
    """A reference's value in the report's table units: percent, seconds, or as printed."""
    value = ref["value"]
    scale = TIME_UNITS.get(ref.get("unit") or "s", 1.0) if ref.get("kind") == "time" else 1.0
    if isinstance(value, (list, tuple)):
        return float(value[0]) * scale, float(value[1]) * scale
    return float(value) * scale


def mean_std(values) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value) of the values that are set."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def reference_difference(value: float | None, reference: float | tuple[float, float] | None
                         ) -> float | None:
    """cnnbench minus report (percentage points for accuracies); 0 inside a published range."""
    if value is None or reference is None:
        return None
    if isinstance(reference, (list, tuple)):
        low, high = float(reference[0]), float(reference[1])
        return 0.0 if low <= value <= high else value - (high if value > high else low)
    return value - float(reference)


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
            config = {k: v for k, v in record.config.items() if k not in PER_SEED}
            key = ("config", json.dumps(config, sort_keys=True, default=str)) if config else (
                "dir", str(record.path))
        groups.setdefault(key, RunGroup(key)).records.append(record)
    return list(groups.values())
