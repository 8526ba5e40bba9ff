"""The report of a search: ``OUT/search.md`` with its figures in ``OUT/figures/``.

From what :func:`cnnbench.search.runner.run_search` recorded (``search.json``) and the Optuna
study: the best trials, the best trial's one test, the optimisation history (each trial's
validation accuracy and the best so far), the parameter importances (Optuna's fANOVA
evaluator), and every trial's validation accuracy per epoch, pruned trials drawn dashed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cnnbench.report.document import Document
from cnnbench.report.figures import palette, save

__all__ = ["write_search_report"]


def _pct(value) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "—"


def _value(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def history_figure(trials: list[dict]) -> Figure | None:
    done = [t for t in trials if t["state"] == "complete"]
    if not done:
        return None
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    ax.scatter([t["number"] for t in done], [100 * t["val_acc"] for t in done], s=18,
               label="finished trial", zorder=3)
    pruned = [t for t in trials if t["state"] == "pruned" and t["val_acc_by_epoch"]]
    if pruned:
        ax.scatter([t["number"] for t in pruned],
                   [100 * max(t["val_acc_by_epoch"].values()) for t in pruned], s=18,
                   marker="x", color="grey", label="pruned (its best epoch)", zorder=2)
    best, xs, ys = None, [], []
    for t in sorted(done, key=lambda t: t["number"]):
        best = t["val_acc"] if best is None else max(best, t["val_acc"])
        xs.append(t["number"])
        ys.append(100 * best)
    ax.step(xs, ys, where="post", color="black", linewidth=1, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Optimisation history", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def importance_figure(importances: dict[str, float]) -> Figure | None:
    if not importances:
        return None
    names = list(importances)[::-1]
    fig = Figure(figsize=(6.4, 0.5 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fANOVA, share of the variance of validation accuracy)")
    ax.set_title("Hyper-parameter importances", fontsize=10)
    ax.set_xlim(0, 1)
    return fig


def curves_figure(trials: list[dict]) -> Figure | None:
    drawn = [t for t in trials if t["val_acc_by_epoch"] and t["state"] in ("complete", "pruned")]
    if not drawn:
        return None
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    colours = palette(len(drawn))
    for colour, t in zip(colours, drawn):
        epochs = sorted(t["val_acc_by_epoch"])
        ax.plot(epochs, [100 * t["val_acc_by_epoch"][e] for e in epochs], marker="o",
                markersize=3, color=colour if t["state"] == "complete" else "grey",
                linestyle="-" if t["state"] == "complete" else "--", linewidth=1,
                alpha=1.0 if t["state"] == "complete" else 0.7)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Validation accuracy per epoch (pruned trials dashed, grey)", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def write_search_report(out: str | Path, result: dict[str, Any], study=None) -> Path:
    """Write ``out/search.md`` (and its figures) for ``result`` (``search.json``'s content);
    ``study`` (the Optuna study) gives the parameter importances."""
    out = Path(out)
    trials = result["trials"]
    importances: dict[str, float] = {}
    complete = [t for t in trials if t["state"] == "complete"]
    if study is not None and len(complete) >= 2 and len(result["space"]) > 1:
        import optuna

        try:
            importances = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):  # e.g. every finished trial had the same values
            importances = {}
    best = result["best"]
    doc = Document(f"cnnbench search: {result['study_name']}")
    base = result["base"]
    doc.paragraph(f"{base['model']} on {base['dataset']}: {len(trials)} trials "
                  f"({len(complete)} finished, "
                  f"{sum(t['state'] == 'pruned' for t in trials)} pruned, "
                  f"{sum(t['state'] == 'fail' for t in trials)} failed), {result['sampler']}, "
                  f"pruner {result['pruner']}; objective: the {result['objective']} (the test set "
                  f"is used once, for the best trial). Storage: `{result['storage']}`.")
    doc.paragraph("Space: " + "; ".join(f"`{s}`" for s in result["space"]) + ".")
    doc.heading(2, "Best trial")
    baseline = result.get("baseline")
    lines = [f"trial {best['trial']}: validation accuracy {_pct(best['val_acc'])}%, test "
             f"accuracy {_pct(best['test_acc'])}% ({best['tested_weights']} weights, tested once); "
             + ", ".join(f"`{k}={_value(v)}`" for k, v in best["params"].items()),
             f"its config: `best.yaml` (`cnnbench train --config {out / 'best.yaml'}`); its run: "
             f"`{best['run_dir']}`"]
    if baseline is not None:
        gain = 100 * (best["val_acc"] - baseline["val_acc"])
        lines.append(f"the base options (trial {baseline['trial']}: "
                     + ", ".join(f"`{k}={_value(v)}`" for k, v in baseline["params"].items())
                     + f"): validation accuracy {_pct(baseline['val_acc'])}%, so the search "
                     f"gained {gain:+.2f} pp on validation")
    doc.bullets(lines)
    doc.heading(2, "Trials")
    ranked = sorted(trials, key=lambda t: (t["state"] != "complete", -(t["val_acc"] or 0)))
    names = list(best["params"]) or sorted({k for t in trials for k in t["params"]})
    doc.table(["trial", "state", *names, "val acc (%)", "epochs", "training (s)"],
              [[str(t["number"]) + (" (base)" if t["baseline"] else ""), t["state"],
                *[_value(t["params"].get(n, "—")) for n in names],
                _pct(t["val_acc"] if t["state"] == "complete"
                     else max(t["val_acc_by_epoch"].values(), default=None)),
                str(t["epochs"] or "—"),
                f"{t['train_time_s']:.1f}" if t["train_time_s"] is not None else "—"]
               for t in ranked])
    figures = out / "figures"
    doc.figure(save(history_figure(trials), figures / "history.png"),
               "Validation accuracy of each trial and the best so far")
    doc.figure(save(importance_figure(importances), figures / "importances.png"),
               "Which options mattered (Optuna's fANOVA importances over the finished trials)")
    doc.figure(save(curves_figure(trials), figures / "curves.png"),
               "Validation accuracy per epoch of every trial")
    overhead = result.get("overhead_per_trial_s")
    doc.paragraph(f"The search took {result['search_time_s']:.1f} s"
                  + (f"; Optuna's own time (sampling, pruning, storage) {overhead:.2f} s per trial"
                     if overhead is not None else "") + ".")
    path = out / "search.md"
    path.write_text(doc.markdown(out))
    return path
