"""The report's per-epoch curves: accuracy and loss panels, the training loss per step, the
learning rate, and the time per epoch (matplotlib; shared rules in :mod:`figures`).

Short runs are drawn so that they read: a series of few points has markers (a single point
is labelled with its value), epoch axes tick whole epochs, and legends list only the runs
drawn.

Runs on less than the report's recipe (the quick or cpu profile, or fewer images) are never
drawn like the others: their lines are dashed and faded, and their legend label says why
(``"resnet18 (cpu, capped)"``, ``"lenet5 (quick)"``; :attr:`RunGroup.capped`).

A lab report's own per-epoch numbers (the study file's ``curves:``, in ``study.json``) are
drawn dotted with open squares in the run's colour, labelled ``"lenet (report 000)"``: its
accuracies in the accuracy panels, its times per epoch in a figure of their own
(:func:`epoch_time_curves`); its losses nowhere (they are not on cnnbench's scale).
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cnnbench.reference_metrics import REFERENCE_METRICS, TIME_UNITS
from cnnbench.report.figures import (MARKERS_UP_TO, finite, palette, plain_log, plain_number,
                                     value_range)
from cnnbench.report.records import RunGroup


def _legend(ax, others=()) -> None:
    """A legend of the labelled artists (one per run drawn) of ``ax`` and the axes ``others``
    (each label once), outside the axes when long."""
    entries: dict[str, object] = {}
    for axes in (*others, ax):
        for handle, label in zip(*axes.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if len(entries) > 8:
        ax.legend(list(entries.values()), list(entries), fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    elif entries:
        ax.legend(list(entries.values()), list(entries), fontsize=8)


def _style(group: RunGroup) -> tuple[str, str, float]:
    """A run's legend label, line style and opacity: a run on less than the report's recipe
    is dashed, faded and says why in its label."""
    if group.capped:
        return f"{group.label} ({group.capped})", "--", 0.55
    return group.label, "-", 1.0

def _log_y(ax, ys: list[float], label: str) -> None:
    """A log-scale y axis with plain tick labels, fitted to ``ys``."""
    ax.set_ylabel(label)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    limits = value_range(ys, log=True)
    if limits:
        ax.set_ylim(*limits)

def _epoch_axis(ax, epochs: list[float]) -> None:
    """Whole epochs as ticks; a run of a few epochs gets half an epoch either side."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    lo, hi = min(epochs), max(epochs)
    if hi - lo < 4:
        ax.set_xlim(lo - 0.5, hi + 0.5)


def _series(ax, x, y, *, color, label, alpha=1.0, linestyle="-", value_text=None) -> None:
    """One run's line; markers when it has few points, and its value when it has one."""
    n = len(x)
    ax.plot(x, y, color=color, alpha=alpha, label=label, linestyle=linestyle,
            marker="o" if n <= MARKERS_UP_TO else None, markersize=6 if n == 1 else 4)
    if n == 1 and value_text is not None:
        ax.annotate(value_text(y[0]), (x[0], y[0]), textcoords="offset points", xytext=(6, 4),
                    fontsize=7, color=color)

# The per-epoch panels of the report's curves, as the lab reports drew them: (metrics.jsonl
# key, panel title). The test panel is drawn only for runs that evaluated the test set every
# epoch (`monitor_test`); it is a monitor, never used to select weights.
ACCURACY_PANELS = (("train_acc", "training"), ("val_acc", "validation"),
                   ("epoch_test_acc", "test (monitor)"))
LOSS_PANELS = (("train_loss", "training"), ("val_loss", "validation"),
               ("epoch_test_loss", "test (monitor)"))


def epoch_curves(groups: list[RunGroup], key: str, ylabel: str, *,
                 percent: bool = False) -> Figure | None:
    """One line per run directory of ``metrics.jsonl[key]`` against the epoch."""
    return epoch_panels(groups, ((key, None),), ylabel, percent=percent)


def epoch_panels(groups: list[RunGroup], panels, ylabel: str, *,
                 percent: bool = False) -> Figure | None:
    """Side-by-side panels (sharing the y axis) of per-epoch ``metrics.jsonl`` keys, one
    ``(key, title)`` each, one line per run directory and a colour per run throughout;
    panels no run has data for are left out."""
    series = []  # per panel: (title, [(group index, seed index, x, y)])
    for key, title in panels:
        lines = []
        for gi, group in enumerate(groups):
            for ri, record in enumerate(group.records):
                points = [(m["epoch"], m[key]) for m in record.metrics
                          if finite([m.get("epoch"), m.get(key)])]
                if points:
                    x, y = zip(*points)
                    lines.append((gi, ri, list(x), [100 * v for v in y] if percent else list(y)))
        # the lab report's own accuracies per epoch (in percent), beside cnnbench's
        reported = [(gi, c) for gi, group in enumerate(groups)
                    for c in (report_curves(group, key) if percent and
                              REFERENCE_METRICS.get(key) == "accuracy" else [])]
        if lines or reported:
            series.append((title, lines, reported))
    if not series:
        return None
    n = len(series)
    fig = Figure(figsize=(7.5, 4.2) if n == 1 else (4.0 * n + 0.8, 4.2))
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    colors = palette(len(groups))
    xs: list[float] = []
    ys: list[float] = []
    for ax, (title, lines, reported) in zip(axes, series):
        labelled: set[int] = set()
        for gi, _ri, x, y in lines:
            label, linestyle, alpha = _style(groups[gi])
            _series(ax, x, y, color=colors[gi], linestyle=linestyle,
                    alpha=alpha * (0.6 if gi in labelled else 1.0),
                    label=None if gi in labelled else label,
                    value_text=lambda v: f"{v:.2f}" if percent else f"{v:.4g}")
            labelled.add(gi)
            xs += x
            ys += y
        for gi, curve in reported:
            ax.plot(curve["x"], curve["y"], color=colors[gi], label=curve["label"], **REPORT_STYLE)
            xs += curve["x"]
            ys += curve["y"]
        if title:
            ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes:
        _epoch_axis(ax, xs)
    limits = value_range(ys, floor=0.0, ceiling=100.0 if percent else None)
    if limits:
        axes[0].set_ylim(*limits)
    axes[0].set_ylabel(ylabel)
    _legend(axes[-1], axes[:-1])
    return fig


# The lab report's own per-epoch numbers: dotted, open squares, in the run's colour.
REPORT_STYLE = {"linestyle": ":", "linewidth": 1.2, "marker": "s", "markersize": 4,
                "markerfacecolor": "none"}


def report_curves(group: RunGroup, metric: str) -> list[dict]:
    """The lab report's per-epoch series of ``metric`` for a run, from ``study.json["curves"]``
    (the study file's ``curves:``), ready to draw: ``{"x": epochs, "y": values as printed
    (times in seconds), "label": "lenet (report 000)", "sources": ["000:657-666", ...],
    "note": ...}``. A series that repeats an earlier one point for point (a report that
    printed one run twice) is drawn once, its source added to ``sources``; a run directory
    written before curves existed, or an entry that is not a series, has none."""
    raw = group.first.study.get("curves")
    found: list[dict] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or item.get("metric") != metric:
            continue
        points = [p for p in item.get("points") or []
                  if isinstance(p, (list, tuple)) and len(p) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
                  and finite(p)]
        scale = TIME_UNITS.get(item.get("unit") or "s", 1.0) if metric == "epoch_time_s" else 1.0
        if not points or (metric == "epoch_time_s" and item.get("unit") not in (None, *TIME_UNITS)):
            continue
        x = [p[0] for p in points]
        y = [p[1] * scale for p in points]
        source = str(item.get("source") or "")
        same = next((c for c in found if c["x"] == x and c["y"] == y), None)
        if same is not None:
            same["sources"].append(source)
            continue
        found.append({"x": x, "y": y, "sources": [source], "note": str(item.get("note") or "")})
    for c in found:
        report = c["sources"][0].split(":")[0]
        where = f"report {report}" if report else "report"
        if len(found) > 1:  # several series of one run: say which lines each is
            where += f", lines {c['sources'][0].split(':')[-1]}"
        c["label"] = f"{group.label} ({where})"
    return found


def epoch_time_curves(groups: list[RunGroup]) -> Figure | None:
    """Seconds per epoch of the runs whose lab report printed its times per epoch: cnnbench's
    (``metrics.jsonl`` ``epoch_time_s``, one line per run directory, styled as in every
    figure) beside the report's (:func:`report_curves`, converted from its unit), on a log
    axis; ``None`` when no run has the report's times. Different machines: the caption must
    say which (cnnbench's device, the report's hardware)."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    xs: list[float] = []
    ys: list[float] = []
    for group, color in zip(groups, palette(len(groups))):  # a run's colour as elsewhere
        reported = report_curves(group, "epoch_time_s")
        if not reported:
            continue
        label, linestyle, alpha = _style(group)
        labelled = False
        for record in group.records:
            points = [(m["epoch"], m["epoch_time_s"]) for m in record.metrics
                      if finite([m.get("epoch")])
                      and finite([m.get("epoch_time_s")], positive=True)]  # log axis
            if not points:
                continue
            x, y = zip(*points)
            _series(ax, list(x), list(y), color=color, linestyle=linestyle,
                    alpha=alpha * (0.6 if labelled else 1.0), label=None if labelled else label,
                    value_text=lambda v: f"{v:.3g} s")
            labelled = True
            xs += x
            ys += y
        for curve in reported:
            points = [(e, v) for e, v in zip(curve["x"], curve["y"]) if v > 0]
            if points:
                x, y = zip(*points)
                ax.plot(list(x), list(y), color=color, label=curve["label"], **REPORT_STYLE)
                xs += x
                ys += y
    if not xs:
        return None
    ax.set_xlabel("epoch")
    _log_y(ax, ys, "time per epoch (s, log scale)")
    _epoch_axis(ax, xs)
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    return fig


def lr_curves(groups: list[RunGroup]) -> Figure | None:
    """The learning rate each logged step trained with (``train_steps.jsonl``), per run."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    xs: list[float] = []
    ys: list[float] = []
    for group, color in zip(groups, palette(len(groups))):
        label, linestyle, alpha = _style(group)
        labelled = False
        for record in group.records:
            points = [(r["step"], r["lr"]) for r in record.steps
                      if finite([r.get("step"), r.get("lr")])]
            if not points:
                continue
            x, y = zip(*points)
            _series(ax, x, y, color=color, linestyle=linestyle,
                    alpha=alpha * (0.6 if labelled else 1.0), label=None if labelled else label,
                    value_text=plain_number)
            labelled = True
            xs += x
            ys += y
    if not xs:
        return None
    ax.set_xlabel("training step")
    ax.set_ylabel("learning rate")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain_number(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain_number(v)))
    limits = value_range(ys, floor=0.0)
    if limits:
        ax.set_ylim(*limits)
    elif min(ys) >= 0:
        ax.set_ylim(bottom=0.0)  # a schedule reads against zero
    limits = value_range(xs, floor=0.0)
    if limits:
        ax.set_xlim(*limits)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def smooth(values: list[float]) -> list[float]:
    """Bias-corrected exponential moving average, its span about 1/30 of the points."""
    span = max(1, len(values) // 30)
    beta = 1.0 - 2.0 / (span + 1)
    out, avg = [], 0.0
    for t, v in enumerate(values, 1):
        avg = beta * avg + (1.0 - beta) * v
        out.append(avg / (1.0 - beta ** t) if beta > 0 else v)
    return out


def train_loss_curves(groups: list[RunGroup]) -> Figure | None:
    """Smoothed training loss against images seen (``train_steps.jsonl``, else per epoch)."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    xs: list[float] = []
    ys: list[float] = []
    for group, color in zip(groups, palette(len(groups))):
        label, linestyle, alpha = _style(group)
        labelled = False
        for record in group.records:
            rows = record.steps or record.metrics
            points = [(r["images_seen"], r["train_loss"]) for r in rows
                      if finite([r.get("images_seen")])
                      and finite([r.get("train_loss")], positive=True)]  # log axis
            if not points:
                continue
            x, y = zip(*points)
            if len(x) > 3:
                ax.plot(x, y, color=color, alpha=0.15 * alpha, linewidth=0.8, linestyle=linestyle)
            _series(ax, x, smooth(list(y)), color=color, linestyle=linestyle,
                    alpha=alpha * (0.6 if labelled else 1.0), label=None if labelled else label,
                    value_text=lambda v: f"{v:.4g}")
            labelled = True
            xs += x
            ys += y
    if not xs:
        return None
    ax.set_xlabel("training images seen")
    _log_y(ax, ys, "training loss (smoothed)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain_number(v)))
    limits = value_range(xs, floor=0.0)
    if limits:
        ax.set_xlim(*limits)
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    return fig



