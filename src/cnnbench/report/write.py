"""Assemble the comparison report from run directories and write its files.

``write_report(paths, out)`` writes ``out/report.md`` (figures linked from
``out/figures/``), ``out/report.html`` (the same report, figures embedded), ``out/results.csv`` (one row per
run directory) and ``out/reproduction.csv`` (one row per published number and run). It reads only the run directories, so it can be re-rendered any time.
Runs are shown per study (``study.json``); runs made by ``cnnbench train`` form one section.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path

from cnnbench.errors import UserError
from cnnbench.report import figures as fig
from cnnbench.report import reproduction, tables
from cnnbench.report.document import Document
from cnnbench.report.runs import RunGroup, RunRecord, group_runs, load_runs


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    csv: Path
    figures: tuple[Path, ...]
    reproduction_csv: Path | None = None


def write_report(paths: list[str | Path], out_dir: str | Path | None = None) -> ReportFiles:
    """Render the report of the runs in ``paths`` (run directories or folders holding them)."""
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
                  "at any time. Accuracies in percent; differences in percentage points (pp).")
    all_groups: list[RunGroup] = []
    for study_name, study_records in sections.items():
        groups = group_runs(study_records)
        all_groups += groups
        _study_section(doc, study_name, groups, figures_dir / _slug(study_name or "runs"))

    markdown = out / "report.md"
    markdown.write_text(doc.markdown(out))
    html = out / "report.html"
    html.write_text(doc.html())
    csv_path = tables.write_csv(all_groups, out / "results.csv")
    repro_csv = reproduction.write_reproduction_csv(reproduction.reproductions(all_groups),
                                                    out / "reproduction.csv")
    return ReportFiles(markdown, html, csv_path, tuple(doc.figures), repro_csv)


def _study_section(doc: Document, study_name: str, groups: list[RunGroup], fig_dir: Path) -> None:
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
    if "cifar10_jpeg" in datasets:
        doc.paragraph("`cifar10_jpeg` is a lossy JPEG mirror of CIFAR-10, not the official "
                      "files: its accuracies are not comparable digit for digit with published "
                      "CIFAR-10 numbers (JPEG compression costs accuracy).")

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
                  "several seeds, mean ± sample standard deviation")
    doc.bullets(legend + tables.run_notes(groups))
    _reproduction_section(doc, groups)

    for chain, table in tables.ablation_tables(groups).items():
        doc.heading(3, f"Ablation: {chain}")
        doc.paragraph("One row per cumulative step (each adds its change to the step above); "
                      "test accuracy with the change against the previous step and against the "
                      "baseline (step 0), only between steps of the same profile (a capped or "
                      "quick step is never compared with a full one).")
        doc.table(*table)

    grid = meta.get("grid_table")
    if grid:
        table = tables.grid_table(groups, grid["rows"], grid["cols"])
        if table:
            doc.heading(3, f"{grid['rows']} × {grid['cols']}")
            doc.paragraph(f"Test accuracy (%), one row per {grid['rows']}, one column per "
                          f"{grid['cols']}.")
            doc.table(*table)

    doc.heading(3, "Curves")
    marked = [f"{g.label} ({g.capped})" for g in groups if g.capped]
    if marked:
        doc.paragraph("Dashed, faded lines are runs on less than the report's recipe (quick or "
                      "cpu profile, or fewer images), marked in the legends: "
                      + ", ".join(marked) + ".")
    monitor = " | test (monitor: the test set every epoch, not used for selection)"
    doc.figure(fig.save(fig.epoch_panels(groups, fig.ACCURACY_PANELS, "accuracy (%)",
                                         percent=True), fig_dir / "accuracy.png"),
               "Accuracy per epoch: training (on the epoch's augmented batches) | validation"
               + (monitor if _monitored(groups) else ""))
    doc.figure(fig.save(fig.epoch_panels(groups, fig.LOSS_PANELS, "loss"), fig_dir / "loss.png"),
               "Loss per epoch: training | validation" + (monitor if _monitored(groups) else ""))
    doc.figure(fig.save(fig.train_loss_curves(groups), fig_dir / "train_loss.png"),
               "Training loss against training images seen (smoothed; faint: as logged)")
    doc.figure(fig.save(fig.lr_curves(groups), fig_dir / "lr.png"),
               "Learning rate per training step (train_steps.jsonl)")

    doc.heading(3, "Comparison")
    doc.figure(fig.save(fig.bar_chart(groups, [_scaled(g.test_acc, 100) for g in groups],
                                      "test accuracy (%)"), fig_dir / "test_acc.png"),
               "Test accuracy (error bars: std over seeds)")
    doc.figure(fig.save(fig.bar_chart(groups, [g.stat("train_time_s") for g in groups],
                                      "training time (s)"), fig_dir / "train_time.png"),
               "Training time (evaluation excluded)")
    doc.figure(fig.save(fig.bar_chart(groups, [g.stat("params") for g in groups], "parameters",
                                      log=True), fig_dir / "params.png"), "Parameters (log scale)")
    doc.figure(fig.save(fig.accuracy_vs_macs(groups), fig_dir / "acc_vs_macs.png"),
               "Test accuracy against MACs per image")

    doc.heading(3, "Per run")
    galleries = 0
    for g in groups:
        doc.figure(fig.save(fig.confusion_matrix(g), fig_dir / f"confusion-{_slug(g.label)}.png"),
                   f"Confusion matrix: {g.label} (test set)")
        record = next((r for r in g.finished if r.misclassified_path), None)
        if record is not None:
            path = fig.save(fig.misclassified_gallery(record),
                            fig_dir / f"misclassified-{_slug(g.label)}.png")
            galleries += path is not None
            doc.figure(path, f"Misclassified test images: {g.label} (predicted / true)")
    if not galleries:
        doc.paragraph("No run directory holds `misclassified.pt`, so there is no gallery of "
                      "misclassified images.")

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
                  + "".join(f"`{k}={tables.value_text(v)}`, " for k, v in common.items())
                  + "every other option at cnnbench's default (each run's `config.yaml` "
                  "lists them all).")
    doc.paragraph("Recipe, per run (the settings that differ between runs):")
    doc.table(*table)
    doc.bullets(tables.environment([r for g in groups for r in g.records]))


def _reproduction_section(doc: Document, groups: list[RunGroup]) -> None:
    """Every published number beside cnnbench's, and a difference where that means something."""
    items = reproduction.reproductions(groups)
    if not items:
        return
    doc.heading(3, "Reproduction")
    doc.paragraph("report = the number the lab report published; cnnbench = this run's value "
                  "of the same quantity (mean ± std over seeds); difference = cnnbench − report "
                  "(pp for accuracies; 0 inside a published range). A difference is shown only "
                  "for a run on the report's recipe (profile full, all the images, no "
                  "`differs` in the study file) and a comparable quantity (accuracies and "
                  "parameter counts; losses and times only where the study file says so).")
    for which, table, notes in reproduction.reproduction_tables(items):
        if which != "on the report's recipe":
            doc.heading(4, "Runs not on the report's recipe — not comparable")
        doc.table(*table)
        doc.bullets(notes)
    if all(not item.on_recipe for item in items):
        doc.paragraph("No run followed the report's recipe, so no difference is computed; "
                      "run the study with `--profile full` to compare.")


def _monitored(groups: list[RunGroup]) -> bool:
    return any("epoch_test_acc" in m for g in groups for r in g.records for m in r.metrics)


def _scaled(ms: tuple[float, float] | None, factor: float) -> tuple[float, float] | None:
    return None if ms is None else (ms[0] * factor, ms[1] * factor)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"
