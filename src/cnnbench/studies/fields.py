"""Checks of a study file's fields, and the lab reports' numbers it quotes (``reference:``,
``curves:``, ``differs:``): one-line :class:`UserError` for every mistake."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cnnbench.errors import UserError
from cnnbench.reference_metrics import REFERENCE_METRICS, TIME_UNITS

_REFERENCE_KEYS = {"metric", "value", "unit", "wording", "source", "note", "comparable"}
_CURVE_KEYS = {"metric", "unit", "source", "points", "note"}
# The per-epoch quantities a `curves:` series may be (the metrics.jsonl keys cnnbench logs).
CURVE_METRICS = ("train_acc", "val_acc", "train_loss", "val_loss", "epoch_time_s")
_SOURCE = re.compile(r"\d+:\d+(-\d+)?")


@dataclass(frozen=True)
class Reference:
    """One number a lab report published for a run: ``value`` as the report printed it (an
    accuracy in percent or a ``(low, high)`` range, a time in ``unit``), where it is
    (``source``: ``"<file-number>:<line>"`` in the lab reports, ``../shared/seeds``) and
    whether cnnbench's number can be set against it (``comparable``)."""

    value: float | tuple[float, float]
    metric: str = "test_acc"
    wording: str = ""
    note: str = ""
    source: str = ""
    unit: str = ""               # times only: s, min or h
    comparable: bool = True

    @property
    def kind(self) -> str:
        """``accuracy``, ``loss``, ``time`` or ``count`` (:data:`REFERENCE_METRICS`)."""
        return REFERENCE_METRICS[self.metric]

    def to_dict(self) -> dict:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"value": value, "metric": self.metric, "unit": self.unit or None,
                "wording": self.wording, "source": self.source, "note": self.note,
                "comparable": self.comparable}


def flag(raw: Any, where: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise UserError(f"{where} must be true or false, got {raw!r}")
    return raw


def parse_references(raw: Any, where: str) -> tuple[Reference, ...]:
    """A run's ``reference:``: a list of mappings (one mapping alone is a list of one)."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        return (reference(raw, where),)
    if not isinstance(raw, list):
        raise UserError(f"{where} must be a list of mappings such as "
                        "{metric: test_acc, value: 97.02, source: \"000:797\"}")
    return tuple(reference(item, f"{where}[{i}]") for i, item in enumerate(raw))


def reference(raw: Any, where: str) -> Reference:
    raw = mapping(raw, where)
    check_keys(raw, _REFERENCE_KEYS, where)
    metric = raw.get("metric", "test_acc")
    if metric not in REFERENCE_METRICS:
        raise UserError(f"{where}: unknown metric {metric!r}; choose one of "
                        f"{', '.join(REFERENCE_METRICS)}")
    kind = REFERENCE_METRICS[metric]
    where = f"{where} ({metric})"
    value = raw.get("value")
    if isinstance(value, list) and kind == "accuracy":
        if len(value) != 2 or not all(is_number(v) for v in value) or value[0] > value[1]:
            raise UserError(f"{where}: a range must be [low, high], two numbers in percent, "
                            f"got {value!r}")
        value = (float(value[0]), float(value[1]))
    elif isinstance(value, list):
        raise UserError(f"{where}: a range [low, high] is only for accuracies; give the one "
                        "number the report printed")
    elif is_number(value):
        value = float(value)
    else:
        raise UserError(f"{where}: value must be a number"
                        + (" in percent or [low, high]" if kind == "accuracy" else "")
                        + f", got {value!r}")
    for v in value if isinstance(value, tuple) else (value,):
        if kind == "accuracy" and not 0 <= v <= 100:
            raise UserError(f"{where}: an accuracy is in percent (0 to 100), got {v:g}")
        if v < 0:
            raise UserError(f"{where}: value must not be negative, got {v:g}")
    unit = raw.get("unit")
    if unit is not None and kind != "time":
        raise UserError(f"{where}: unit is only for times (epoch_time_s, train_time_s)")
    if kind == "time":
        unit = "s" if unit is None else unit
        if unit not in TIME_UNITS:
            raise UserError(f"{where}: unknown unit {unit!r}; use {', '.join(TIME_UNITS)}")
    source = raw.get("source")
    if source is not None and not (isinstance(source, str)
                                   and re.fullmatch(r"\d+:\d+(-\d+)?", source)):
        raise UserError(f"{where}: source must be a quoted \"<file-number>:<line>\" such as "
                        f"\"000:797\" (line 797 of ../shared/seeds/000_*.txt), got {source!r}")
    comparable = raw.get("comparable", kind in ("accuracy", "count"))
    if not isinstance(comparable, bool):
        raise UserError(f"{where}: comparable must be true or false, got {comparable!r}")
    return Reference(value=value, metric=metric, wording=str(raw.get("wording") or ""),
                     note=str(raw.get("note") or ""), source=source or "", unit=unit or "",
                     comparable=comparable)


@dataclass(frozen=True)
class Curve:
    """A per-epoch series a lab report printed for a run: ``points`` are ``(epoch, value)``
    with each value as printed on the ``source`` lines (``"<file-number>:<first>-<last>"``):
    accuracies in percent (``unit`` ``%``), losses as printed (no unit), times in ``unit``."""

    metric: str
    points: tuple[tuple[int, float], ...]
    source: str
    unit: str = ""
    note: str = ""

    @property
    def kind(self) -> str:
        """``accuracy``, ``loss`` or ``time`` (:data:`REFERENCE_METRICS`)."""
        return REFERENCE_METRICS[self.metric]

    def to_dict(self) -> dict:
        return {"metric": self.metric, "unit": self.unit or None, "source": self.source,
                "points": [[e, v] for e, v in self.points], "note": self.note}


def parse_curves(raw: Any, where: str) -> tuple[Curve, ...]:
    """A run's ``curves:``: a list of series (one mapping alone is a list of one)."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise UserError(f"{where} must be a list of mappings such as {{metric: val_acc, "
                        "unit: \"%\", source: \"000:657-666\", points: [[10, 93.43], ...]}")
    return tuple(curve(item, f"{where}[{i}]") for i, item in enumerate(raw))


def curve(raw: Any, where: str) -> Curve:
    raw = mapping(raw, where)
    check_keys(raw, _CURVE_KEYS, where)
    metric = raw.get("metric")
    if metric not in CURVE_METRICS:
        raise UserError(f"{where}: metric must be one of {', '.join(CURVE_METRICS)}, "
                        f"got {metric!r}")
    kind = REFERENCE_METRICS[metric]
    where = f"{where} ({metric})"
    unit = raw.get("unit")
    if kind == "accuracy":
        if unit not in (None, "%"):
            raise UserError(f"{where}: accuracies are in percent as printed (unit \"%\"), "
                            f"got unit {unit!r}")
        unit = "%"
    elif kind == "time":
        if unit is None or unit not in TIME_UNITS:
            raise UserError(f"{where}: a time needs its unit as printed, one of "
                            f"{', '.join(TIME_UNITS)}; got {unit!r}")
    elif unit is not None:
        raise UserError(f"{where}: a loss is as printed and has no unit, got unit {unit!r}")
    source = raw.get("source")
    lines = (source.split(":")[1].split("-") if isinstance(source, str)
             and _SOURCE.fullmatch(source) else None)
    if lines is None or int(lines[0]) > int(lines[-1]):
        raise UserError(f"{where}: source must be the quoted lines the values are on, "
                        f"\"<file-number>:<first>-<last>\" such as \"000:657-666\"; got {source!r}")
    points = raw.get("points")
    if not isinstance(points, list) or not points:
        raise UserError(f"{where}: points must be a non-empty list of [epoch, value] pairs")
    parsed: list[tuple[int, float]] = []
    for point in points:
        if not (isinstance(point, list) and len(point) == 2 and isinstance(point[0], int)
                and not isinstance(point[0], bool) and point[0] >= 1 and is_number(point[1])):
            raise UserError(f"{where}: each point must be [epoch, value], a whole epoch from 1 "
                            f"and a number as printed; got {point!r}")
        epoch, value = point[0], float(point[1])
        if parsed and epoch <= parsed[-1][0]:
            raise UserError(f"{where}: epochs must increase, got epoch {epoch} after "
                            f"{parsed[-1][0]}")
        if value < 0 or (kind == "accuracy" and value > 100):
            raise UserError(f"{where}: epoch {epoch}: "
                            + ("an accuracy is in percent (0 to 100)" if kind == "accuracy"
                               else "a value must not be negative") + f", got {value:g}")
        parsed.append((epoch, value))
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise UserError(f"{where}: note must be text, got {note!r}")
    return Curve(metric=metric, points=tuple(parsed), source=source, unit=unit or "",
                 note=(note or "").strip())


_CHOICE_KEYS = {"what", "cnnbench", "report", "source", "runs"}


@dataclass(frozen=True)
class Choice:
    """A choice that changes results and that the lab report did not make (or made
    otherwise, or left to a reading of its code): ``what`` (e.g. "initialisation"), what
    cnnbench does, what the report did or says (``report``, with its ``source`` line when it
    says it), and the runs it concerns (``runs``: run names or shell patterns; empty: all).
    The report shows it beside every number of those runs."""

    what: str
    cnnbench: str
    report: str = ""
    source: str = ""
    runs: tuple[str, ...] = ()

    def applies_to(self, run: str) -> bool:
        import fnmatch

        return not self.runs or any(fnmatch.fnmatchcase(run, p) for p in self.runs)

    def to_dict(self) -> dict:
        return {"what": self.what, "cnnbench": self.cnnbench, "report": self.report,
                "source": self.source}


def parse_choices(raw: Any, where: str) -> tuple[Choice, ...]:
    """A study's ``choices:`` list; one-line errors name the entry and the key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UserError(f"{where}: choices must be a list of mappings with what, cnnbench "
                        "(and report, source, runs)")
    out = []
    for i, item in enumerate(raw):
        here = f"{where}: choices[{i}]"
        check_keys(mapping(item, here), _CHOICE_KEYS, here)
        for key in ("what", "cnnbench"):
            if not str(item.get(key) or "").strip():
                raise UserError(f"{here}: needs `{key}` (what the choice is about and what "
                                "cnnbench does)")
        source = str(item.get("source") or "")
        if source and not _SOURCE.fullmatch(source):
            raise UserError(f"{here}: source {source!r} is not FILE:LINE (e.g. 002:111)")
        runs = item.get("runs") or []
        if isinstance(runs, str):
            runs = [runs]
        if not isinstance(runs, list):
            raise UserError(f"{here}: runs must be a list of run names")
        out.append(Choice(what=str(item["what"]).strip(), cnnbench=str(item["cnnbench"]).strip(),
                          report=str(item.get("report") or "").strip(), source=source,
                          runs=tuple(str(r) for r in runs)))
    return tuple(out)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def parse_differs(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or not raw.strip():
        raise UserError(f"{where} must be a sentence saying how the run departs from the "
                        f"report's recipe, got {raw!r}")
    return raw.strip()


def check_keys(raw: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(sorted(allowed))}")


def mapping(raw: Any, where: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping")
    return raw
