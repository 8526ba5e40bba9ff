"""The report's figures (matplotlib, written as PNG files).

Every function takes the runs to draw and the file to write, draws with matplotlib's
object API (``Figure``, no pyplot state, no display needed) and returns the path it wrote,
or ``None`` when there was nothing to draw.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

from cnnbench.report.runs import RunGroup, RunRecord

DPI = 100


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _legend(ax, n: int) -> None:
    if n > 8:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    elif n:
        ax.legend(fontsize=8)


def epoch_curves(groups: list[RunGroup], key: str, ylabel: str, path: Path, *,
                 percent: bool = False) -> Path | None:
    """One line per run directory of ``metrics.jsonl[key]`` against the epoch."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    drawn = 0
    for group, color in zip(groups, _colors(len(groups))):
        for i, record in enumerate(group.records):
            points = [(m["epoch"], m[key]) for m in record.metrics
                      if m.get(key) is not None and m.get("epoch") is not None]
            if not points:
                continue
            x, y = zip(*points)
            y = [100 * v for v in y] if percent else y
            ax.plot(x, y, color=color, marker="o" if len(x) < 12 else None, markersize=3,
                    alpha=1.0 if i == 0 else 0.6, label=group.label if i == 0 else None)
            drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legend(ax, len(groups))
    return _save(fig, path)


def smooth(values: list[float]) -> list[float]:
    """Bias-corrected exponential moving average, its span about 1/30 of the points."""
    span = max(1, len(values) // 30)
    beta = 1.0 - 2.0 / (span + 1)
    out, avg = [], 0.0
    for t, v in enumerate(values, 1):
        avg = beta * avg + (1.0 - beta) * v
        out.append(avg / (1.0 - beta ** t) if beta > 0 else v)
    return out


def train_loss_curves(groups: list[RunGroup], path: Path) -> Path | None:
    """Smoothed training loss against images seen (``train_steps.jsonl``, else per epoch)."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    drawn = 0
    for group, color in zip(groups, _colors(len(groups))):
        for i, record in enumerate(group.records):
            rows = record.steps or record.metrics
            points = [(r["images_seen"], r["train_loss"]) for r in rows
                      if r.get("images_seen") is not None and r.get("train_loss") is not None]
            if not points:
                continue
            x, y = zip(*points)
            if len(x) > 3:
                ax.plot(x, y, color=color, alpha=0.15, linewidth=0.8)
            ax.plot(x, smooth(list(y)), color=color, alpha=1.0 if i == 0 else 0.6,
                    label=group.label if i == 0 else None)
            drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("training images seen")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, len(groups))
    return _save(fig, path)


def bar_chart(groups: list[RunGroup], values: list[tuple[float, float] | None], ylabel: str,
              path: Path, *, log: bool = False) -> Path | None:
    """One bar per run (error bar: std over seeds); runs without a value are left out."""
    items = [(g.label, v) for g, v in zip(groups, values) if v is not None]
    if not items:
        return None
    labels, vals = zip(*items)
    fig = Figure(figsize=(max(5.0, 0.55 * len(labels) + 2), 4.0))
    ax = fig.subplots()
    means = [v[0] for v in vals]
    errs = [v[1] for v in vals]
    bars = ax.bar(range(len(labels)), means, yerr=errs if any(errs) else None, capsize=3,
                  color=_colors(len(labels)))
    ax.bar_label(bars, labels=[_short(m) for m in means], fontsize=7, padding=2)
    ax.set_xticks(range(len(labels)), labels, rotation=35 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def accuracy_vs_macs(groups: list[RunGroup], path: Path) -> Path | None:
    """Test accuracy against multiply-accumulates per image (log scale)."""
    points = [(g.label, g.first.get("macs"), g.test_acc) for g in groups]
    points = [(lab, m, acc) for lab, m, acc in points if m and acc is not None]
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
    ax.set_xlabel("MACs per image (multiply-accumulates, forward)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def confusion_matrix(group: RunGroup, path: Path) -> Path | None:
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
    return _save(fig, path)


def misclassified_gallery(record: RunRecord, path: Path, limit: int = 32) -> Path | None:
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
    return _save(fig, path)


def _short(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"
