"""The reproduction table: every number a lab report published beside cnnbench's, and
``reproduction.csv``.

A reference is a number the lab report published for a run (``study.json["reference"]``: a
list of ``{metric, value, unit, wording, source, note, comparable}``; accuracies in percent or a
``[low, high]`` range). The table sets cnnbench's value beside each; a difference only where
the run followed the report's recipe (profile ``full``, all the images, no ``differs``) and the
quantity is comparable.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from cnnbench.report.records import (QUANTITIES, RunGroup, reference_difference,
                                  reference_value)
from cnnbench.report.cells import duration, pct, si_number
from cnnbench.report.tables import accuracy_interval, n_seeds, profile_text

# Why a quantity is not comparable when the study file gives no note.
_NOT_COMPARABLE = {"loss": "a loss depends on how it is summed or averaged",
                   "time": "times depend on the hardware",
                   "accuracy": "marked not comparable", "count": "marked not comparable",
                   "unknown": "a quantity this report does not know"}
_UNITS = {"accuracy": "%", "time": "s"}
SEEDS_DIR = "../shared/seeds"  # where a reference's `source` ("000:797") points


@dataclass(frozen=True)
class Reproduction:
    """One published number of one run, with cnnbench's value of the same quantity."""

    group: RunGroup
    ref: dict
    value: tuple[float, float] | None   # cnnbench: mean, std in table units (%, s, as printed)
    gaps: tuple[str, ...]               # why the run is not the report's recipe (none: it is)

    @property
    def kind(self) -> str:
        return self.ref["kind"]

    @property
    def label(self) -> str:
        quantity = QUANTITIES.get(self.ref["metric"])
        return quantity.label if quantity else self.ref["metric"]

    @property
    def on_recipe(self) -> bool:
        return not self.gaps

    @property
    def difference(self) -> float | None:
        """cnnbench − report in table units: only on the report's recipe, when comparable."""
        if not self.on_recipe or not self.ref["comparable"] or self.value is None:
            return None
        return reference_difference(self.value[0], reference_value(self.ref))

    @property
    def verdict(self) -> str:
        """The "same recipe?" cell."""
        if self.gaps:
            return "no: " + "; ".join(self.gaps)
        if not self.ref["comparable"]:
            return f"yes (not comparable: {self.ref.get('note') or _NOT_COMPARABLE[self.kind]})"
        choices = run_choices(self.group)
        if choices:
            return "yes, with cnnbench's choices: " + ", ".join(c["what"] for c in choices)
        return "yes"


def run_choices(group: RunGroup) -> list[dict]:
    """The choices that change results and that the report did not make, for this run
    (``study.json["choices"]``, from the study file's ``choices:``)."""
    return [c for c in group.first.study.get("choices") or [] if isinstance(c, dict)
            and c.get("what")]


def choice_notes(groups: list[RunGroup]) -> list[str]:
    """One line per choice, naming the runs it concerns: what cnnbench does, what the
    report did or says (and where)."""
    seen: dict[str, tuple[dict, list[str]]] = {}
    for g in groups:
        for c in run_choices(g):
            key = json.dumps(c, sort_keys=True)
            seen.setdefault(key, (c, []))[1].append(g.label)
    lines = []
    for c, runs in seen.values():
        text = f"cnnbench's choice, **{c['what']}** ({', '.join(runs)}): {c['cnnbench']}"
        if c.get("report"):
            text += f"; the report: {c['report']}"
            if c.get("source"):
                text += f" ({source_text(c['source'])})"
        lines.append(text.rstrip(".") + ".")
    return lines


def reproductions(groups: list[RunGroup]) -> list[Reproduction]:
    """Every reference of every run, in the runs' order."""
    out = []
    for g in groups:
        gaps = tuple(g.recipe_gaps())
        for ref in g.references:
            ms = g.quantity(ref["metric"])
            scale = 100.0 if ref["kind"] == "accuracy" else 1.0
            out.append(Reproduction(g, ref, None if ms is None else (scale * ms[0], scale * ms[1]),
                                    gaps))
    return out


def printed(value) -> str:
    """A published number as the study file gives it: ``97.02``, ``1.960664``, ``64–68``."""
    if isinstance(value, (list, tuple)):
        return "–".join(printed(v) for v in value)
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def quantity_text(kind: str, mean: float | None, spread: float = 0.0, n: int = 1) -> str:
    """cnnbench's value in table units: ``97.02 %``, a loss as a number, a time as
    :func:`duration`, a count exactly (``44,426``); ``± spread`` over several seeds."""
    if mean is None:
        return "—"
    many = n > 1
    if kind == "accuracy":
        return f"{mean:.2f} ± {spread:.2f} %" if many else f"{mean:.2f} %"
    if kind == "time":
        return duration(mean) + (f" ± {duration(spread)}" if many else "")
    if kind == "count":  # exact: a parameter count reproduces to the last digit or not at all
        return f"{round(mean):,}"
    return f"{mean:.4g}" + (f" ± {spread:.2g}" if many else "")


def reference_cell(ref: dict) -> str:
    """A published number in table units: ``97.02 %``, ``64–68 %``, ``1.960664``, a time as
    :func:`duration` (and as printed, when not in seconds), a count exactly."""
    kind, value = ref["kind"], ref["value"]
    if kind == "accuracy":
        return printed(value) + " %"
    if kind == "time":
        unit = ref.get("unit") or "s"
        return duration(reference_value(ref)) + (f" ({printed(value)} {unit})" if unit != "s" else "")
    if kind == "count":
        return f"{round(value):,}"
    return printed(value)


def difference_text(kind: str, diff: float | None, ref: float | tuple[float, float]) -> str:
    """cnnbench − report: pp for accuracies, a signed time or count (count: also in %)."""
    if diff is None:
        return "—"
    sign = "+" if diff >= 0 else "-"
    if kind == "accuracy":
        return f"{diff:+.2f} pp"
    if kind == "time":
        return sign + duration(abs(diff))
    if kind == "count":
        if diff == 0:
            return "0"
        base = ref[0] if isinstance(ref, tuple) else ref
        return sign + si_number(abs(diff)) + (f" ({100 * diff / base:+.1f} %)" if base else "")
    return f"{diff:+.4g}"


def _cnnbench_cell(item: Reproduction) -> str:
    g = item.group
    if not g.finished:
        return f"**{g.status.upper()}**"
    n = n_seeds(g)
    if item.value is None:
        text = "—"
        if item.ref["metric"] == "max_epoch_test_acc":
            text += " (the run did not evaluate the test set every epoch: monitor_test)"
    else:
        text = quantity_text(item.kind, item.value[0], item.value[1], n)
    if item.ref["metric"] == "max_epoch_test_acc" and g.test_acc:
        weights = {r.summary.get("tested_weights") for r in g.finished}
        which = ("final weights (no validation split)" if weights == {"final"}
                 else "best-validation weights" if weights == {"best"}
                 else "last epoch's weights" if weights == {"last"} else "selected weights")
        text += f" (test acc {pct(g.test_acc, n)} %: {which}, nothing selected on the test set)"
    if item.ref["metric"] == "test_acc" and item.value is not None:
        text += tested_text(g)
    return text


def tested_text(g: RunGroup) -> str:
    """Which weights a test accuracy is of, where that is a choice: `` (last epoch's weights,
    as the report; best-validation weights: 97.30 %)``; "" for the default (best-validation
    weights, or the final ones without a validation split)."""
    if {r.summary.get("tested_weights") for r in g.finished} != {"last"}:
        return ""
    best = g.stat("best_val_test_acc")
    return (" (last epoch's weights, as the report tested"
            + (f"; best-validation weights: {pct(best, n_seeds(g))} %"
               if best else "") + ")")


def cnnbench_interval(item: Reproduction) -> tuple[float, float] | None:
    """cnnbench's 95 % interval of an accuracy reference's quantity, in percent
    (:func:`cnnbench.report.tables.accuracy_interval`: Wilson for one seed, t over several);
    ``None`` for other quantities or when there is none."""
    if item.kind != "accuracy":
        return None
    interval = accuracy_interval(item.group, item.ref["metric"])
    return None if interval is None else (100 * interval[0], 100 * interval[1])


def interval_position(item: Reproduction) -> str:
    """Where the report's number lies against cnnbench's 95 % interval: ``inside``,
    ``outside (above)`` (the report's number is higher), ``outside (below)``; ``—`` when not
    comparable (no difference: :attr:`Reproduction.difference`) or without an interval. A
    published range counts as inside when it overlaps the interval."""
    interval = cnnbench_interval(item) if item.difference is not None else None
    if interval is None:
        return "—"
    value = reference_value(item.ref)
    low, high = value if isinstance(value, tuple) else (value, value)
    if low > interval[1]:
        return "outside (above)"
    if high < interval[0]:
        return "outside (below)"
    return "inside"


def source_text(source: str) -> str:
    """``"000:797"`` -> where a reader finds the line: lab report 000, line 797."""
    number, _, line = source.partition(":")
    return f"lab report {number}, line {line} (`{SEEDS_DIR}/{number}_*.txt`)"


def reproduction_tables(items: list[Reproduction]
                        ) -> list[tuple[str, tuple[list[str], list[list[str]]], list[str]]]:
    """The reproduction tables of a study: the rows of runs on the report's recipe, then
    those of every other run (quick, cpu, capped, ``differs``: never a difference). Each is
    ``(which, (header, rows), footnotes)``; a footnote gives a reference's wording, source and
    note (once for the runs that share it), marked ``[n]`` in its report cell. Tables without
    rows are left out."""
    header = ["run", "quantity", "report", "cnnbench", "difference", INSIDE_HEADER, "profile",
              "same recipe?"]
    tables = []
    number = 0
    for which in ("on the report's recipe", "not on the report's recipe"):
        rows = []
        notes: dict[str, tuple[int, list[str], Reproduction]] = {}  # one per distinct reference
        for item in items:
            if item.on_recipe != (which == "on the report's recipe"):
                continue
            ref = item.ref
            report = reference_cell(ref)
            if ref.get("source") or ref.get("wording") or ref.get("note"):
                key = json.dumps([item.label, ref], sort_keys=True, default=str)
                if key not in notes:
                    number += 1
                    notes[key] = (number, [], item)
                notes[key][1].append(item.group.label)
                report += f" [{notes[key][0]}]"
            rows.append([item.group.label, item.label, report, _cnnbench_cell(item),
                         difference_text(item.kind, item.difference, reference_value(ref)),
                         interval_position(item), profile_text(item.group), item.verdict])
        if rows:
            tables.append((which, (header, rows),
                           [_footnote(n, runs, item) for n, runs, item in notes.values()]))
    return tables


def _footnote(number: int, runs: list[str], item: Reproduction) -> str:
    ref = item.ref
    parts = [f"[{number}] **{', '.join(runs)}**, {item.label}: report {reference_cell(ref)}"]
    if ref.get("wording"):
        parts.append(f"(\"{ref['wording']}\")")
    if ref.get("source"):
        parts.append(f"in {source_text(ref['source'])}")
    if ref.get("note"):
        parts.append(f"— {ref['note']}")
    return " ".join(parts).rstrip(".") + "."


# The reproduction table's column of :func:`interval_position`.
INSIDE_HEADER = "report in cnnbench's 95% CI?"

REPRODUCTION_FIELDS = ["study", "run", "metric", "quantity", "unit", "report_as_printed",
                       "report_low", "report_high", "cnnbench", "cnnbench_std",
                       "cnnbench_ci_low", "cnnbench_ci_high", "seeds",
                       "difference", "difference_unit", "report_in_ci", "comparable", "profile",
                       "limited", "same_recipe", "why_not", "source", "wording", "note"]


def write_reproduction_csv(items: list[Reproduction], path: Path) -> Path:
    """``reproduction.csv``: one row per reference and run, as in the reproduction tables
    (accuracies in percent, differences in pp, times in seconds; seeds as mean and std;
    ``cnnbench_ci_low``/``_high``: cnnbench's 95 % interval of an accuracy, ``report_in_ci``:
    :func:`interval_position`, empty where the table shows ``—``)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPRODUCTION_FIELDS)
        writer.writeheader()
        for item in items:
            ref, g = item.ref, item.group
            value = reference_value(ref)
            low, high = value if isinstance(value, tuple) else (value, value)
            diff = item.difference
            interval, position = cnnbench_interval(item), interval_position(item)
            writer.writerow({
                "study": g.first.study_name, "run": g.label, "metric": ref["metric"],
                "quantity": item.label, "unit": _UNITS.get(item.kind, ""),
                "report_as_printed": printed(ref["value"]).replace("–", "-")
                + (f" {ref['unit']}" if ref.get("unit") else ""), "report_low": low, "report_high": high,
                "cnnbench": None if item.value is None else round(item.value[0], 6),
                "cnnbench_std": None if item.value is None else round(item.value[1], 6),
                "cnnbench_ci_low": None if interval is None else round(interval[0], 6),
                "cnnbench_ci_high": None if interval is None else round(interval[1], 6),
                "seeds": n_seeds(g), "difference": None if diff is None else round(diff, 6),
                "difference_unit": "pp" if item.kind == "accuracy" else _UNITS.get(item.kind, ""),
                "report_in_ci": None if position == "—" else position,
                "comparable": ref["comparable"],
                "profile": "/".join(sorted({r.profile or "" for r in g.records})),
                "limited": any(r.limited for r in g.records), "same_recipe": item.on_recipe,
                "why_not": "; ".join(item.gaps) or None, "source": ref.get("source") or None,
                "wording": ref.get("wording") or None, "note": ref.get("note") or None})
    return path
