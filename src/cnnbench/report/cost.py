"""The report's cost view: what each network costs against what it reaches. Parameters and
MACs (``summary.json``), training time per epoch, and the inference latency at batch 1 and
throughput at batch 256 that ``cnnbench eval --latency`` (or ``study run --latency``) measured
on the machine that ran it (``latency.json``, PyTorch eager and ONNX Runtime): a table and
accuracy-against-cost figures with the Pareto front marked (the networks no other network
beats on both accuracy and that cost)."""

from __future__ import annotations

import json
from typing import Any

from matplotlib.figure import Figure

from cnnbench.report.figures import palette, plain_log
from cnnbench.report.records import RunGroup
from cnnbench.report.tables import count, duration

RESULT_FILE = "latency.json"  # cnnbench.inference.latency.RESULT_FILE (no torch here)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """The indices of ``(cost, accuracy)`` points that no other point beats: none has a lower
    or equal cost with a higher accuracy, or a lower cost with an equal one; by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def latency_of(group: RunGroup) -> dict[str, Any] | None:
    """The first finished seed's ``latency.json``, if measured."""
    for record in group.finished:
        path = record.path / RESULT_FILE
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _epoch_time(group: RunGroup) -> float | None:
    s = group.first.summary
    epochs, train = s.get("epochs_completed"), s.get("train_time_s")
    return train / epochs if epochs and train is not None else None


def _rate(latency: dict | None, engine: str, key: str) -> float | None:
    return ((latency or {}).get(engine) or {}).get(key)


def cost_table(groups: list[RunGroup]) -> tuple[list[str], list[list[str]]]:
    """One row per finished run: accuracy, parameters, MACs, training time per epoch, and the
    measured latency and throughput (— where not measured)."""
    header = ["run", "model", "test acc (%)", "params", "MACs", "train time / epoch",
              "batch 1 (ms): PyTorch", "batch 1: ONNX Runtime", "batch 256 (images/s): PyTorch",
              "batch 256: ONNX Runtime", "Pareto (latency)"]
    rows = []
    timed = [(g, latency_of(g)) for g in groups if g.test_acc is not None]
    points = [(_rate(lat, "eager", "batch1_ms"), g.test_acc[0]) for g, lat in timed]
    measured = [i for i, p in enumerate(points) if p[0] is not None]
    front = {measured[i] for i in pareto_front([points[i] for i in measured])}
    for i, (g, lat) in enumerate(timed):
        def ms(engine):
            value = _rate(lat, engine, "batch1_ms")
            return "—" if value is None else f"{value:.3g}"

        def per_s(engine):
            value = _rate(lat, engine, "batch256_images_per_s")
            return "—" if value is None else count(value)

        rows.append([g.label, str(g.first.get("model", "—")), f"{100 * g.test_acc[0]:.2f}",
                     count(g.first.get("params")), count(g.first.get("macs")),
                     duration(_epoch_time(g)), ms("eager"), ms("onnxruntime"), per_s("eager"),
                     per_s("onnxruntime"), "yes" if i in front else ("—" if i not in measured else "")])
    return header, rows


def cost_figure(groups: list[RunGroup]) -> Figure | None:
    """Test accuracy against three costs (MACs, training time per epoch, PyTorch latency at
    batch 1; log scales where a cost spans more than a decade), each panel's Pareto front
    drawn as a line through its networks."""
    done = [g for g in groups if g.test_acc is not None]
    panels = [("MACs per image", lambda g: g.first.get("macs")),
              ("training time per epoch (s)", _epoch_time),
              ("latency at batch 1 (ms, PyTorch)", lambda g: _rate(latency_of(g), "eager", "batch1_ms"))]
    panels = [(label, cost) for label, cost in panels
              if sum(1 for g in done if cost(g)) >= 2]
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels) + 1.8, 4.0))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    colors = dict(zip((g.label for g in done), palette(len(done))))
    for ax, (label, cost) in zip(axes, panels):
        pts = [(cost(g), 100 * g.test_acc[0], g) for g in done if cost(g)]
        for x, y, g in pts:
            ax.scatter([x], [y], color=colors[g.label], s=30, zorder=3, label=g.label)
        front = [pts[i] for i in pareto_front([(x, y) for x, y, _ in pts])]
        ax.plot([p[0] for p in front], [p[1] for p in front], color="0.3", linewidth=1,
                linestyle="--", zorder=2, label="Pareto front")
        xs = [p[0] for p in pts]
        if max(xs) > 10 * min(xs):  # a log axis where the costs span more than a decade
            ax.set_xscale("log")
            plain_log(ax.xaxis)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    return fig
