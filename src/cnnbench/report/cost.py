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
from cnnbench.training.rundir import LATENCY_FILE
from cnnbench.report.cells import count, duration



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
        path = record.path / LATENCY_FILE
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _dataset(group: RunGroup) -> str:
    return str(group.first.get("dataset", ""))


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
    front = set()  # accuracies compare only on one dataset: a front per dataset
    for dataset in dict.fromkeys(_dataset(timed[i][0]) for i in measured):
        mine = [i for i in measured if _dataset(timed[i][0]) == dataset]
        front |= {mine[i] for i in pareto_front([points[i] for i in mine])}
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
    batch 1; log scales where a cost spans more than a decade), one row of panels per dataset
    (accuracies compare only on one), each panel's Pareto front drawn through its networks."""
    done = [g for g in groups if g.test_acc is not None]
    panels = [("MACs per image", lambda g: g.first.get("macs")),
              ("training time per epoch (s)", _epoch_time),
              ("latency at batch 1 (ms, PyTorch)", lambda g: _rate(latency_of(g), "eager", "batch1_ms"))]
    panels = [(label, cost) for label, cost in panels
              if sum(1 for g in done if cost(g)) >= 2]
    if not panels:
        return None
    datasets = list(dict.fromkeys(_dataset(g) for g in done))  # one row of panels each
    fig = Figure(figsize=(4.2 * len(panels) + 1.8, 3.6 * len(datasets) + 0.4))
    grid = fig.subplots(len(datasets), len(panels), squeeze=False)
    models = list(dict.fromkeys(str(g.first.get("model", g.label)) for g in done))
    colors = dict(zip(models, palette(len(models))))  # a network's colour in every row
    for row, dataset in zip(grid, datasets):
        for ax, (label, cost) in zip(row, panels):
            _cost_panel(ax, [g for g in done if _dataset(g) == dataset], cost, colors)
            ax.set_xlabel(label)
        row[0].set_ylabel(f"test accuracy (%)\n{dataset}" if len(datasets) > 1 else "test accuracy (%)")
    handles: dict = {}
    for ax in grid.flatten():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, frameon=False)
    return fig


def _cost_panel(ax, done: list[RunGroup], cost, colors) -> None:
    """One panel: the runs of one dataset against one cost, and their Pareto front."""
    pts = [(cost(g), 100 * g.test_acc[0], g) for g in done if cost(g)]
    if not pts:
        return
    for x, y, g in pts:
        model = str(g.first.get("model", g.label))
        ax.scatter([x], [y], color=colors[model], s=30, zorder=3, label=model)
    front = [pts[i] for i in pareto_front([(x, y) for x, y, _ in pts])]
    ax.plot([p[0] for p in front], [p[1] for p in front], color="0.3", linewidth=1,
            linestyle="--", zorder=2, label="Pareto front")
    xs = [p[0] for p in pts]
    if max(xs) > 10 * min(xs):  # a log axis where the costs span more than a decade
        ax.set_xscale("log")
        plain_log(ax.xaxis)
    ax.grid(alpha=0.3)
