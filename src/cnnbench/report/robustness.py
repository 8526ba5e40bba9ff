"""The report's robustness view: each network's test accuracy under common corruptions, read
from the ``corruptions.json`` that ``cnnbench eval --corruptions`` (or ``study run
--corruptions``) wrote into its run directory: a table ranking the networks and the
accuracy-against-severity curves of every corruption."""

from __future__ import annotations

import json
import math

from matplotlib.figure import Figure

from cnnbench.report.figures import palette
from cnnbench.report.records import RunGroup
from cnnbench.training.rundir import CORRUPTIONS_FILE



def corruption_results(groups: list[RunGroup]) -> list[tuple[RunGroup, dict]]:
    """Each group's corruption results (its first finished seed that has them)."""
    found = []
    for g in groups:
        for record in g.finished:
            path = record.path / CORRUPTIONS_FILE
            if path.is_file():
                found.append((g, json.loads(path.read_text())))
                break
    return found


def robustness_table(groups: list[RunGroup]) -> tuple[list[str], list[list[str]]]:
    """The networks ranked by mean accuracy under corruption (first seed with results),
    within each dataset (accuracies compare only on one)."""
    header = ["dataset", "rank", "run", "model", "images", "clean (%)", "under corruption (%)",
              "relative drop (%)", "hardest corruption (mean %)"]
    rows = []
    results = corruption_results(groups)
    datasets = list(dict.fromkeys(str(g.first.get("dataset", "")) for g, _r in results))
    ranked = [(d, i, g, r) for d in datasets
              for i, (g, r) in enumerate(sorted(
                  [(g, r) for g, r in results if str(g.first.get("dataset", "")) == d],
                  key=lambda gr: -gr[1]["mean_corruption_acc"]), 1)]
    for dataset, i, g, r in ranked:
        means = r.get("per_corruption_mean") or {}
        hardest = min(means, key=means.get) if means else None
        drop = r.get("relative_drop")
        rows.append([dataset, str(i), g.label, str(r.get("model", "—")), str(r.get("n", "—")),
                     f"{100 * r['clean_acc']:.2f}",
                     f"{100 * r['mean_corruption_acc']:.2f}",
                     "—" if drop is None else f"{100 * drop:.1f}",
                     "—" if hardest is None else f"{hardest} ({100 * means[hardest]:.1f})"])
    return header, rows


def severity_figure(groups: list[RunGroup]) -> Figure | None:
    """One panel per corruption: test accuracy against severity (0: clean), a line per run."""
    results = corruption_results(groups)
    if not results:
        return None
    names = list(dict.fromkeys(n for _g, r in results for n in r["accuracy"]))
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.3 * cols + 1.6, 2.6 * rows + 0.4))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).flatten()
    for ax, name in zip(axes, names):
        for (g, r), color in zip(results, palette(len(results))):
            if name not in r["accuracy"]:
                continue
            xs = [0, *r["severities"]]
            ys = [100 * r["clean_acc"], *(100 * a for a in r["accuracy"][name])]
            ax.plot(xs, ys, color=color, marker="o", markersize=3, linewidth=1.2, label=g.label)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax in axes[(rows - 1) * cols:]:
        ax.set_xlabel("severity (0: clean)")
    for ax in axes[::cols]:
        ax.set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    return fig
