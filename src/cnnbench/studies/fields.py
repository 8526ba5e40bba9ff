"""Checks of a study file's fields, and the lab reports' numbers it quotes (``reference:``,
``differs:``): one-line :class:`UserError` for every mistake."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cnnbench.errors import UserError
from cnnbench.reference_metrics import REFERENCE_METRICS, TIME_UNITS

_REFERENCE_KEYS = {"metric", "value", "unit", "wording", "source", "note", "comparable"}


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
