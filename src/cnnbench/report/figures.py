"""The report's figures (matplotlib, written as PNG files).

Each figure function draws with matplotlib's object API (``Figure``, no pyplot state, no
display needed) and returns the ``Figure``, or ``None`` when no run has data for it;
:func:`save` writes one to a PNG file.

Short runs are drawn so that they read: a series of few points has markers (a single point
is labelled with its value), an axis whose data is one value gets a range around it rather
than matplotlib's hairline band, epoch axes tick whole epochs, log axes label ticks as plain
numbers (``0.3``, ``2``, ``100k``, not ``3×10⁻¹``) and legends list only the runs drawn.

Runs on less than the report's recipe (the quick or cpu profile, or fewer images) are never
drawn like the others: their lines are dashed and faded, and their legend label says why
(``"resnet18 (cpu, capped)"``, ``"lenet5 (quick)"``; :attr:`RunGroup.capped`).

A lab report's own per-epoch numbers (the study file's ``curves:``, in ``study.json``) are
drawn dotted with open squares in the run's colour, labelled ``"lenet (report 000)"``: its
accuracies in the accuracy panels, its times per epoch in a figure of their own
(:func:`epoch_time_curves`); its losses nowhere (they are not on cnnbench's scale).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, MaxNLocator

from cnnbench.reference_metrics import REFERENCE_METRICS, TIME_UNITS
from cnnbench.report.records import RunGroup, RunRecord
from cnnbench.report.tables import si_number

DPI = 150  # the HTML page shows figures at 135 px per inch (document.FIGURE_DISPLAY_SCALE)
MARKERS_UP_TO = 12  # series with at most this many points are drawn with markers


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def save(fig: Figure | None, path: Path) -> Path | None:
    """Write ``fig`` as a PNG at :data:`DPI` (nothing for ``None``); the path written, or ``None``."""
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


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


def plain_number(value: float) -> str:
    """A tick label without powers of ten: 0.3, 2.35, 250k, 1.2M."""
    return si_number(value, 4)


class _PlainLogFormatter(LogFormatterSciNotation):
    """Labels the ticks matplotlib's log formatter would label, as plain numbers."""

    def __call__(self, x, pos=None):
        return plain_number(x) if super().__call__(x, pos) else ""


def _plain_log(axis) -> None:
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _log_y(ax, ys: list[float], label: str) -> None:
    """A log-scale y axis with plain tick labels, fitted to ``ys``."""
    ax.set_ylabel(label)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    limits = _range(ys, log=True)
    if limits:
        ax.set_ylim(*limits)


def _finite(values, *, positive: bool = False) -> bool:
    return all(v is not None and math.isfinite(v) and (v > 0 or not positive) for v in values)


def _range(values: list[float], *, log: bool = False, floor: float | None = None,
           ceiling: float | None = None) -> tuple[float, float] | None:
    """Axis limits around data that is (nearly) one value, else ``None`` (autoscale).

    One value gets ±10 % of itself (×/÷ 1.5 on a log axis) so that the axis shows a
    range a reader can place it in, not a band a thousandth wide.
    """
    lo, hi = min(values), max(values)
    if log:
        if hi > lo * (1 + 1e-6):
            return None
        return lo / 1.5, hi * 1.5
    if hi - lo > 1e-6 * max(1.0, abs(lo), abs(hi)):
        return None
    mid = (lo + hi) / 2
    half = 0.1 * abs(mid) if mid else 1.0
    low, high = mid - half, mid + half
    if floor is not None and lo >= floor:
        low = max(low, floor)
    if ceiling is not None and hi <= ceiling:
        high = min(high, ceiling + 0.1 * half)
    return low, high


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
                          if _finite([m.get("epoch"), m.get(key)])]
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
    colors = _colors(len(groups))
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
    limits = _range(ys, floor=0.0, ceiling=100.0 if percent else None)
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
                  and _finite(p)]
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
    for group, color in zip(groups, _colors(len(groups))):  # a run's colour as elsewhere
        reported = report_curves(group, "epoch_time_s")
        if not reported:
            continue
        label, linestyle, alpha = _style(group)
        labelled = False
        for record in group.records:
            points = [(m["epoch"], m["epoch_time_s"]) for m in record.metrics
                      if _finite([m.get("epoch")])
                      and _finite([m.get("epoch_time_s")], positive=True)]  # log axis
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
    for group, color in zip(groups, _colors(len(groups))):
        label, linestyle, alpha = _style(group)
        labelled = False
        for record in group.records:
            points = [(r["step"], r["lr"]) for r in record.steps
                      if _finite([r.get("step"), r.get("lr")])]
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
    limits = _range(ys, floor=0.0)
    if limits:
        ax.set_ylim(*limits)
    elif min(ys) >= 0:
        ax.set_ylim(bottom=0.0)  # a schedule reads against zero
    limits = _range(xs, floor=0.0)
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
    for group, color in zip(groups, _colors(len(groups))):
        label, linestyle, alpha = _style(group)
        labelled = False
        for record in group.records:
            rows = record.steps or record.metrics
            points = [(r["images_seen"], r["train_loss"]) for r in rows
                      if _finite([r.get("images_seen")])
                      and _finite([r.get("train_loss")], positive=True)]  # log axis
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
    limits = _range(xs, floor=0.0)
    if limits:
        ax.set_xlim(*limits)
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    return fig



def bar_chart(groups: list[RunGroup], values: list[tuple[float, float] | None],
                     ylabel: str, *, log: bool = False, title: str | None = None) -> Figure | None:
    """One bar per run (error bar: std over seeds); runs without a value are left out.
    It draws every run it is given: the report passes only runs that compare
    (:func:`cnnbench.report.records.comparison_groups`), and a ``title`` when they are capped."""
    items = [(g.label, v) for g, v in zip(groups, values)
             if v is not None and _finite([v[0]], positive=log)]
    if not items:
        return None
    labels, vals = zip(*items)
    fig = Figure(figsize=(max(5.0, 0.55 * len(labels) + 2), 4.0))
    ax = fig.subplots()
    means = [v[0] for v in vals]
    errs = [v[1] if _finite([v[1]]) else 0.0 for v in vals]
    bars = ax.bar(range(len(labels)), means, yerr=errs if any(errs) else None, capsize=3,
                  color=_colors(len(labels)))
    ax.bar_label(bars, labels=[si_number(m) for m in means], fontsize=7, padding=2)
    ax.set_xticks(range(len(labels)), labels, rotation=35 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain_number(v)))
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return fig



def accuracy_vs_macs(groups: list[RunGroup], *, title: str | None = None) -> Figure | None:
    """Test accuracy against multiply-accumulates per image (log scale); every run it is
    given, as :func:`bar_chart`."""
    points = [(g.label, g.first.get("macs"), g.test_acc) for g in groups]
    points = [(lab, m, acc) for lab, m, acc in points
              if m and acc is not None and _finite([m], positive=True) and _finite([acc[0]])]
    if not points:
        return None
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for (label, macs, acc), color in zip(points, _colors(len(points))):
        ax.errorbar([macs], [100 * acc[0]], yerr=[100 * acc[1]] if acc[1] else None,
                    fmt="o", color=color, capsize=3)
        ax.annotate(label, (macs, 100 * acc[0]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    limits = _range([m for _, m, _ in points], log=True)
    if limits:
        ax.set_xlim(*limits)
    limits = _range([100 * acc[0] for _, _, acc in points], floor=0.0, ceiling=100.0)
    if limits:
        ax.set_ylim(*limits)
    ax.set_xlabel("MACs per image (multiply-accumulates, forward)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=9)
    return fig



def confusion_matrix(group: RunGroup) -> Figure | None:
    """Row-normalised confusion matrix (rows: true class), summed over the run's seeds."""
    mats = [r.summary["confusion_matrix"] for r in group.finished
            if r.summary.get("confusion_matrix")]
    if not mats:
        return None
    n = len(mats[0])
    counts = [[sum(m[i][j] for m in mats) for j in range(n)] for i in range(n)]
    rows = [[c / max(1, sum(row)) for c in row] for row in counts]
    classes = list(group.first.summary.get("classes") or range(n))
    size = 1.6 + 0.42 * n
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i][j]:
                    ax.text(j, i, str(counts[i][j]), ha="center", va="center", fontsize=6,
                            color="white" if rows[i][j] > 0.5 else "black")
        ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(n), [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    seeds = f" (sum over {len(mats)} seeds)" if len(mats) > 1 else ""
    ax.set_title(f"{group.label}{seeds}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return fig



def misclassified_gallery(record: RunRecord, limit: int = 32) -> Figure | None:
    """Misclassified test images with predicted and true labels (``misclassified.pt``)."""
    source = record.misclassified_path
    if source is None:
        return None
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
        images, pred, true = data["images"][:limit], data["pred"], data["true"]
    except Exception:  # noqa: BLE001 - a damaged optional file only loses its figure
        return None
    if len(images) == 0:
        return None
    classes = list(record.summary.get("classes") or [])

    def name(i: int) -> str:
        return str(classes[i]) if 0 <= i < len(classes) else str(i)

    cols = min(8, len(images))
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(1.35 * cols, 1.55 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(images):
            continue
        img = images[k]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(f"pred {name(int(pred[k]))}\ntrue {name(int(true[k]))}", fontsize=7)
    return fig

