"""Assemble the comparison report from run directories and write its files.

``write_report(paths, out)`` writes ``out/report.md`` (figures linked from
``out/figures/``), ``out/report.html`` (the same report, figures embedded), ``out/results.csv`` (one row per
run directory) and ``out/reproduction.csv`` (one row per published number and run). It reads only the run directories, so it can be re-rendered any time.
``figures=False`` (``cnnbench report --no-figures``) draws none: every table and both CSV files
as with figures, without the curves and per-run sections (:mod:`figure_sections`) and the
figures of the others (drawing is most of a report's time); ``run_figures=False``
(``--no-run-figures``) leaves out only the per-run section (each run's confusion matrix and
gallery: two figures a run, most of a big study's drawing). Figures an earlier report drew in
``out/figures/`` are removed either way.
Runs are shown per study (``study.json``); runs made by ``cnnbench train`` form one section.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

from cnnbench.errors import UserError
from cnnbench.data.specs import stands_in_for
from cnnbench.report import calibration, cost, robustness
from cnnbench.report import figures as fig
from cnnbench.report import reproduction, tables
from cnnbench.report.cells import value_text
from cnnbench.report.significance import significance_section
from cnnbench.report.document import Document
from cnnbench.report.figure_sections import curves_section, per_run_section, slug
from cnnbench.report.records import (RunGroup, RunRecord, comparison_groups, group_runs, load_runs,
                                  split_comparable)


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    csv: Path
    figures: tuple[Path, ...]
    reproduction_csv: Path | None = None


def write_report(paths: list[str | Path], out_dir: str | Path | None = None, *,
                 figures: bool = True, run_figures: bool = True) -> ReportFiles:
    """Render the report of the runs in ``paths`` (run directories or folders holding them);
    ``figures=False``: without its figures (the curves and the per-run figures left out, the
    report saying so); ``run_figures=False``: without the per-run section's figures only."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("give at least one run directory or study output directory")
    if out_dir is None:
        if len(paths) > 1:
            raise UserError("several directories given: pass --out to say where the report goes")
        out_dir = paths[0]
    out = Path(out_dir)
    records = load_runs(paths)
    out.mkdir(parents=True, exist_ok=True)
    figures_dir = out / "figures"
    for old in figures_dir.glob("**/*.png"):  # figures of runs no longer in the report
        old.unlink()

    sections: dict[str, list[RunRecord]] = {}
    for record in records:
        sections.setdefault(record.study_name, []).append(record)
    names = [n for n in sections if n]
    doc = Document(title="cnnbench report" + (f": {', '.join(names)}" if names else ""))
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    doc.paragraph(f"Written by `cnnbench report` on {when} from {len(records)} run "
                  "directories; it reads only those directories, so it can be re-rendered "
                  "at any time. Accuracies in percent; differences in percentage points (pp)."
                  + ("" if figures else " Figures were not drawn (`--no-figures`): tables "
                     "and text only.")
                  + (" Each run's confusion matrix and gallery were not drawn "
                     "(`--no-run-figures`)." if figures and not run_figures else ""))
    all_groups: list[RunGroup] = []
    for study_name, study_records in sections.items():
        groups = group_runs(study_records)
        all_groups += groups
        _study_section(doc, study_name, groups,
                       figures_dir / slug(study_name or "runs") if figures else None, run_figures)

    markdown = out / "report.md"
    markdown.write_text(doc.markdown(out))
    html = out / "report.html"
    html.write_text(doc.html())
    csv_path = tables.write_csv(all_groups, out / "results.csv")
    repro_csv = reproduction.write_reproduction_csv(reproduction.reproductions(all_groups),
                                                    out / "reproduction.csv")
    return ReportFiles(markdown, html, csv_path, tuple(doc.figures), repro_csv)


def _study_section(doc: Document, study_name: str, groups: list[RunGroup],
                   fig_dir: Path | None, run_figures: bool) -> None:
    meta = groups[0].first.study
    doc.heading(2, f"Study `{study_name}`" if study_name else "Runs")
    if meta.get("study_description"):
        doc.paragraph(meta["study_description"])
    if meta.get("study_report"):
        doc.quote(meta["study_report"])
    doc.bullets(meta.get("study_notes") or [])
    datasets = sorted({str(g.first.get("dataset")) for g in groups if g.first.get("dataset")})
    if datasets:
        doc.paragraph("Dataset(s) used: " + ", ".join(f"`{d}`" for d in datasets) + ".")
    for name in datasets:
        stand_in = stands_in_for(name)
        if stand_in is not None:
            doc.paragraph(f"`{name}` stands in for `{stand_in[0]}`: {stand_in[1]}.")

    doc.heading(3, "Results")
    doc.table(*tables.results_table(groups))
    profiles = sorted({r.profile for g in groups for r in g.records if r.profile})
    legend = [f"profile **{p}**: {tables.PROFILE_NOTES.get(p, 'custom')}" if p == "quick" else
              f"profile {p}: {tables.PROFILE_NOTES.get(p, 'custom')}" for p in profiles]
    if any(r.limited for g in groups for r in g.records):
        legend.append("limited: trained or evaluated on a subset of the images "
                      "(limit_train / limit_eval, see Setup)")
    legend.append("test accuracy: measured once, after training, with the weights of the best "
                  "validation epoch (the final weights when a run has no validation split); with "
                  "several seeds, mean ± sample standard deviation"
                  + ("; runs marked *last* test their last epoch's weights instead, as their "
                     "report did (`test_weights: last`), and record the best validation "
                     "epoch's test accuracy beside it (Reproduction)"
                     if any(r.summary.get("tested_weights") == "last"
                            for g in groups for r in g.records) else ""))
    doc.bullets(legend + tables.run_notes(groups))
    _reproduction_section(doc, groups)
    significance_section(doc, groups)

    for chain, table in tables.ablation_tables(groups).items():
        doc.heading(3, f"Ablation: {chain}")
        doc.paragraph("One row per cumulative step (each adds its change to the step above); "
                      "test accuracy with the change against the previous step (the step it "
                      "continues from or changes: its `init` run, else the nearest earlier "
                      "step of the same network; `(vs #k)` when that is not the row above) "
                      "and against the baseline (step 0, same network only). A change is "
                      "computed only between runs on the full recipe and all the images: a "
                      "quick or capped step is compared with nothing, neither a full step nor "
                      "another capped one (`— (capped)`); an empty cell says why.")
        doc.table(*table)

    grid = meta.get("grid_table")
    if grid:
        table = tables.grid_table(groups, grid["rows"], grid["cols"])
        if table:
            doc.heading(3, f"{grid['rows']} × {grid['cols']}")
            marked = sorted({g.capped for g in split_comparable(groups)[1]
                             if (g.first.study.get("axes") or {}).keys()
                             >= {grid["rows"], grid["cols"]}})
            doc.paragraph(f"Test accuracy (%), one row per {grid['rows']}, one column per "
                          f"{grid['cols']}."
                          + (" A cell marked " + " / ".join(f"({m})" for m in marked)
                             + " is a quick or capped run (a smoke test, not the report's "
                             "recipe on all the images): not comparable with the unmarked "
                             "cells, nor with other marked ones." if marked else ""))
            doc.table(*table)

    if fig_dir is not None:
        curves_section(doc, groups, fig_dir)
    _comparison_section(doc, groups, fig_dir)
    _beyond_accuracy(doc, groups, fig_dir)
    if fig_dir is not None and run_figures:
        per_run_section(doc, groups, fig_dir)

    failed = [r for g in groups for r in g.records if r.status != "finished"]
    if failed:
        doc.heading(3, "Runs that did not finish")
        doc.bullets([f"**{r.name}** ({r.status}): {r.error_line or 'no error recorded'} "
                     f"(`{r.path}`)" for r in failed])

    doc.heading(3, "Setup")
    doc.paragraph("Data: split sizes (train / validation / test images) and input.")
    doc.table(*tables.data_table(groups))
    common, table = tables.recipe_table(groups)
    doc.paragraph("Recipe shared by every run: "
                  + "".join(f"`{k}={value_text(v)}`, " for k, v in common.items())
                  + "every other option at cnnbench's default (each run's `config.yaml` "
                  "lists them all).")
    doc.paragraph("Recipe, per run (the settings that differ between runs):")
    doc.table(*table)
    doc.bullets(tables.environment([r for g in groups for r in g.records]))


def _view_section(doc: Document, groups: list[RunGroup], fig_dir: Path | None, *, title: str,
                  present: Callable[[list[RunGroup]], bool], text: Callable[[list[RunGroup]], str],
                  table, figure, png: str, caption: str) -> None:
    """One of the views beyond accuracy (calibration, robustness, cost): for the runs of the
    comparison figures that recorded it (``present``), a paragraph, a table and a figure (none
    where ``fig_dir`` is None)."""
    shown, kind = comparison_groups(groups)
    if not present(shown):
        return
    doc.heading(3, title)
    doc.paragraph(text(shown) + (f" {kind.capitalize()} runs only: not the report's recipe."
                                 if kind else ""))
    doc.table(*table(shown))
    if fig_dir is not None:
        doc.figure(fig.save(figure(shown), fig_dir / png), caption)


def _latency_text(shown: list[RunGroup]) -> str:
    where = sorted({f"{lat.get('device_name', '?')} ({lat.get('threads')} threads)"
                    for lat in map(cost.latency_of, shown) if lat})
    return ("What each network costs beside what it reaches: parameters and MACs per image, "
            "training time per epoch, and inference latency (batch 1) and throughput (batch 256) "
            f"in PyTorch and ONNX Runtime, measured on {', '.join(where)} by `cnnbench eval "
            "--latency`. The Pareto front (per dataset: the Pareto column, and the dashed line "
            "of the figure) holds the networks that no other beats on both accuracy and the cost.")


def _beyond_accuracy(doc: Document, groups: list[RunGroup], fig_dir: Path | None) -> None:
    """Calibration (every run records it), robustness (``corruptions.json``) and cost
    (``latency.json``: without it, the results table's parameters and MACs and the comparison
    section's figures show the rest)."""
    _view_section(
        doc, groups, fig_dir, title="Calibration",
        present=lambda shown: bool(calibration.calibrated(shown)),
        text=lambda shown: (
            "How far each network's confidence can be trusted on the test set: expected "
            "calibration error (ECE, 15 equal-width bins of the top probability), negative "
            "log-likelihood (NLL, the test loss) and Brier score; lower is better. T is one "
            "temperature dividing the logits, fitted on the validation split (never the test "
            "set); it changes no prediction, only the confidence."),
        table=calibration.calibration_table, figure=calibration.reliability_figure,
        png="reliability.png",
        caption="Reliability diagram of the test set (before temperature scaling; first seed): "
                "accuracy against confidence per bin, marker area by images; on the dotted "
                "diagonal a model is as right as it is sure")
    _view_section(
        doc, groups, fig_dir, title="Robustness to common corruptions",
        present=lambda shown: bool(robustness.corruption_results(shown)),
        text=lambda shown: (
            "Test accuracy under nine corruptions of real images at five severities each "
            "(`cnnbench eval --corruptions`), ranked within each dataset by the mean accuracy "
            "over all 45; the relative drop is (clean - mean) / clean; images: how many of the "
            "run's test images were corrupted (all, or a random subset)."),
        table=robustness.robustness_table, figure=robustness.severity_figure,
        png="corruptions.png",
        caption="Test accuracy against corruption severity (0: clean), one panel per corruption")
    _view_section(
        doc, groups, fig_dir, title="Accuracy against cost",
        present=lambda shown: any(cost.latency_of(g) for g in shown), text=_latency_text,
        table=cost.cost_table, figure=cost.cost_figure, png="cost.png",
        caption="Test accuracy against cost (log scales where the costs span a decade); "
                "dashed: the Pareto front")


def _comparison_section(doc: Document, groups: list[RunGroup], fig_dir: Path | None) -> None:
    """The comparison figures hold only runs that compare (``comparison_groups``: the runs on
    the full recipe and all the images, else capped runs of one kind, titled so); the quick
    and capped runs are listed in a table of their own, never in the same figure. Without
    figures (``fig_dir`` None), the table alone."""
    shown, kind = comparison_groups(groups)
    capped = split_comparable(groups)[1]
    if fig_dir is None and not capped:
        return
    doc.heading(3, "Comparison")
    if fig_dir is not None:
        _comparison_figures(doc, shown, kind, bool(capped), fig_dir)
    if capped:
        doc.heading(4, "Quick and capped runs — not comparable, smoke tests only")
        figures = ("" if fig_dir is None else
                   ("Only the " + kind + " runs are in the figures above, and only beside "
                    "one another. " if kind else "None of these runs is in the figures above. "))
        doc.paragraph(figures + "They trained on less than the report's recipe (fewer epochs or "
                      "images): their numbers compare with nothing.")
        doc.table(*tables.capped_table(capped))


def _comparison_figures(doc: Document, shown: list[RunGroup], kind: str | None, capped: bool,
                        fig_dir: Path) -> None:
    what = "smoke tests" if kind == "quick" else "capped runs"
    title = f"{kind} runs only — not comparable with full runs" if kind else None
    suffix = f" — {title}" if title else ""
    if kind:
        doc.paragraph(f"No run of this study is on the report's full recipe with all the "
                      f"images: the figures show the {kind} runs only, beside one another; "
                      f"they are {what}, not the report's recipe, and compare with no "
                      "full run.")
    elif capped:
        doc.paragraph("The figures show only the runs on the report's full recipe with all "
                      "the images; the quick and capped runs are listed below, apart.")
    doc.figure(fig.save(fig.bar_chart(shown, [_scaled(g.test_acc, 100) for g in shown],
                                      "test accuracy (%)", title=title),
                        fig_dir / "test_acc.png"),
               "Test accuracy (error bars: std over seeds)" + suffix)
    doc.figure(fig.save(fig.bar_chart(shown, [g.stat("train_time_s") for g in shown],
                                      "training time (s)", title=title),
                        fig_dir / "train_time.png"),
               "Training time (evaluation excluded)" + suffix)
    doc.figure(fig.save(fig.bar_chart(shown, [g.stat("params") for g in shown], "parameters",
                                      log=True, title=title), fig_dir / "params.png"),
               "Parameters (log scale)" + suffix)
    doc.figure(fig.save(fig.accuracy_vs_macs(shown, title=title), fig_dir / "acc_vs_macs.png"),
               "Test accuracy against MACs per image" + suffix)


def _reproduction_section(doc: Document, groups: list[RunGroup]) -> None:
    """Every published number beside cnnbench's, and a difference where that means something."""
    items = reproduction.reproductions(groups)
    if not items:
        return
    doc.heading(3, "Reproduction")
    doc.paragraph("report = the number the lab report published; cnnbench = this run's value "
                  "of the same quantity (mean ± std over seeds); difference = cnnbench − report "
                  "(pp for accuracies; 0 inside a published range). Whether a run is like for "
                  "like is decided by its files: a difference is shown only when its options "
                  "(`study.json`: dataset, network and every other option, `--set` and "
                  "`--dataset` included) are the report's recipe (the study's full profile), "
                  "the profile is full, all the images were used, and the quantity is "
                  "comparable (accuracies and parameter counts; losses and times only where the "
                  "study file says so). Every other run is listed apart, with each reason.")
    for which, table, notes in reproduction.reproduction_tables(items):
        if which != "on the report's recipe":
            doc.heading(4, "Runs not on the report's recipe — not comparable")
        doc.table(*table)
        doc.bullets(notes)
    choices = reproduction.choice_notes(groups)
    if choices:
        doc.paragraph("Choices that change results and that the report did not make (or that "
                      "rest on a reading of its code), for the runs named:")
        doc.bullets(choices)
    if all(not item.on_recipe for item in items):
        doc.paragraph("No run followed the report's recipe, so no difference is computed; "
                      "run the study with `--profile full` to compare.")


def _scaled(ms: tuple[float, float] | None, factor: float) -> tuple[float, float] | None:
    return None if ms is None else (ms[0] * factor, ms[1] * factor)
