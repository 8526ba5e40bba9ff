"""How a value looks in a report cell: percentages, signed differences, counts without powers
of ten, durations, the lab reports' references and option values. One format per kind of
value, for the tables, the figures' labels and the reproduction table alike."""

from __future__ import annotations

import math


def pct(ms: tuple[float, float] | None, n: int = 1) -> str:
    if ms is None:
        return "—"
    return f"{100 * ms[0]:.2f} ± {100 * ms[1]:.2f}" if n > 1 else f"{100 * ms[0]:.2f}"


def signed(pp: float | None) -> str:
    return "—" if pp is None else f"{pp:+.2f}"


def si_number(value: float, digits: int = 3) -> str:
    """A number without powers of ten, in ``digits`` significant digits: 0.3, 999, 61.7k,
    11.2M, 1.2G (table cells, bar labels and the figures' tick labels)."""
    if not math.isfinite(value):
        return str(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{unit}"
    return f"{value:.{digits}g}"


def count(value) -> str:
    return "—" if value is None else si_number(float(value))


def duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def reference_text(ref: dict | None) -> str:
    """An accuracy reference in percent, as printed (the ablation tables' report column)."""
    if not ref or ref.get("value") is None:
        return "—"
    value = ref["value"]
    text = (f"{value[0]:g}–{value[1]:g}" if isinstance(value, (list, tuple)) else f"{value:g}")
    return text + {"val_acc": " (val)", "max_epoch_test_acc": " (best over epochs)"}.get(
        ref.get("metric"), "")


def value_text(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
