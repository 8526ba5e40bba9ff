"""The report's figures (matplotlib, written as PNG files): the drawing rules every figure
shares, and the charts that are not per-epoch curves (bar charts, accuracy against MACs, the
confusion matrix, the misclassified gallery). The per-epoch curves are in :mod:`curves`.

Each figure function draws with matplotlib's object API (``Figure``, no pyplot state, no
display needed) and returns the ``Figure``, or ``None`` when no run has data for it;
:func:`save` writes one to a PNG file. An axis whose data is one value gets a range around it
rather than matplotlib's hairline band (:func:`value_range`), and log axes label ticks as
plain numbers (``0.3``, ``2``, ``100k``, not ``3×10⁻¹``; :func:`plain_log`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation

from cnnbench.report.records import RunGroup, RunRecord
from cnnbench.report.cells import si_number

DPI = 150  # the HTML page shows figures at 135 px per inch (document.FIGURE_DISPLAY_SCALE)
MARKERS_UP_TO = 12  # series with at most this many points are drawn with markers


def palette(n: int) -> list:
    """``n`` distinct colours (tab10, tab20 beyond ten), in the order of the runs."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


PAD_INCHES = 0.1  # white space around the drawing, as matplotlib's bbox_inches="tight"


def save(fig: Figure | None, path: Path) -> Path | None:
    """Write ``fig`` as a PNG at :data:`DPI`, cropped to what is drawn plus :data:`PAD_INCHES`
    (nothing for ``None``); the path written, or ``None``.

    What ``savefig(bbox_inches="tight")`` gives (the same box, within a pixel), from one
    drawing instead of two
    (matplotlib draws once to measure the drawing and again to render it: about a third of a
    report's time): the figure is rendered whole and the pixels cropped. A drawing that
    reaches outside the figure (a legend placed beside it, a rotated label below) is drawn
    again by ``savefig`` on a canvas of the box measured, which holds it.
    """
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # inches, from the lower left corner
    box = drawn.padded(PAD_INCHES)
    width, height = fig.get_size_inches()
    if drawn.x0 < 0 or drawn.y0 < 0 or drawn.x1 > width or drawn.y1 > height:
        fig.savefig(path, dpi=DPI, bbox_inches=box)  # drawn again, on a canvas that holds it
        return path
    pixels = np.asarray(canvas.buffer_rgba())  # rows from the top
    rows, cols = pixels.shape[:2]
    left, right = round(box.x0 * DPI), round(box.x1 * DPI)
    top, bottom = rows - round(box.y1 * DPI), rows - round(box.y0 * DPI)
    crop = pixels[max(top, 0):min(bottom, rows), max(left, 0):min(right, cols)]
    # the padding may reach past the figure's edge: filled with the figure's background
    background = np.round(np.array(fig.get_facecolor()) * 255).astype(np.uint8)
    out = np.empty((bottom - top, right - left, 4), dtype=np.uint8)
    out[:] = background
    out[max(-top, 0):max(-top, 0) + crop.shape[0], max(-left, 0):max(-left, 0) + crop.shape[1]] = crop
    imsave(path, out, format="png", dpi=DPI)
    return path

def plain_number(value: float) -> str:
    """A tick label without powers of ten: 0.3, 2.35, 250k, 1.2M."""
    return si_number(value, 4)


class _PlainLogFormatter(LogFormatterSciNotation):
    """Labels the ticks matplotlib's log formatter would label, as plain numbers."""

    def __call__(self, x, pos=None):
        return plain_number(x) if super().__call__(x, pos) else ""


def plain_log(axis) -> None:
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))

def finite(values, *, positive: bool = False) -> bool:
    return all(v is not None and math.isfinite(v) and (v > 0 or not positive) for v in values)


def value_range(values: list[float], *, log: bool = False, floor: float | None = None,
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

def bar_chart(groups: list[RunGroup], values: list[tuple[float, float] | None],
                     ylabel: str, *, log: bool = False, title: str | None = None) -> Figure | None:
    """One bar per run (error bar: std over seeds); runs without a value are left out.
    It draws every run it is given: the report passes only runs that compare
    (:func:`cnnbench.report.records.comparison_groups`), and a ``title`` when they are capped."""
    items = [(g.label, v) for g, v in zip(groups, values)
             if v is not None and finite([v[0]], positive=log)]
    if not items:
        return None
    labels, vals = zip(*items)
    fig = Figure(figsize=(max(5.0, 0.55 * len(labels) + 2), 4.0))
    ax = fig.subplots()
    means = [v[0] for v in vals]
    errs = [v[1] if finite([v[1]]) else 0.0 for v in vals]
    bars = ax.bar(range(len(labels)), means, yerr=errs if any(errs) else None, capsize=3,
                  color=palette(len(labels)))
    ax.bar_label(bars, labels=[si_number(m) for m in means], fontsize=7, padding=2)
    ax.set_xticks(range(len(labels)), labels, rotation=35 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
        plain_log(ax.yaxis)
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
              if m and acc is not None and finite([m], positive=True) and finite([acc[0]])]
    if not points:
        return None
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for (label, macs, acc), color in zip(points, palette(len(points))):
        ax.errorbar([macs], [100 * acc[0]], yerr=[100 * acc[1]] if acc[1] else None,
                    fmt="o", color=color, capsize=3)
        ax.annotate(label, (macs, 100 * acc[0]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    limits = value_range([m for _, m, _ in points], log=True)
    if limits:
        ax.set_xlim(*limits)
    limits = value_range([100 * acc[0] for _, _, acc in points], floor=0.0, ceiling=100.0)
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
    """Misclassified test images with predicted and true labels (``misclassified.pt``), each
    with its Grad-CAM heat map of the predicted class drawn over it when the run saved them
    (``heat``; runs before that show the images alone)."""
    source = record.misclassified_path
    if source is None:
        return None
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
        images, pred, true = data["images"][:limit], data["pred"], data["true"]
        heat = data.get("heat")
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
        if heat is not None and k < len(heat):
            ax.imshow(heat[k].float().numpy() / 255, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"pred {name(int(pred[k]))}\ntrue {name(int(true[k]))}", fontsize=7)
    if heat is not None:
        how = (f"Grad-CAM at {data.get('cam_layer')}" if data.get("cam_method") == "grad-cam"
               else "gradient saliency")
        fig.suptitle(f"{how}, for the predicted class", fontsize=8)
    return fig

