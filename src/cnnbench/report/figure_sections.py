"""The report's sections of figures (:mod:`cnnbench.report.write` leaves them out of a report
without figures, ``cnnbench report --no-figures``; the per-run one also with
``--no-run-figures``): the per-epoch curves (beside the lab reports' printed curves and times,
with the notes on those times) and each run's confusion matrix and misclassified gallery (or
the line saying there is none)."""

from __future__ import annotations

import re
from pathlib import Path

from cnnbench.report import curves, tables
from cnnbench.report import figures as fig
from cnnbench.report.document import Document
from cnnbench.report.records import RunGroup, comparison_groups


def curves_section(doc: Document, groups: list[RunGroup], fig_dir: Path) -> None:
    """Per-epoch curves of the runs that compare, and the capped runs' apart."""
    doc.heading(3, "Curves")
    # the runs of the comparison figures (full runs; without any, one kind of capped run);
    # every other run has its own figure below, never beside them
    compared, kind = comparison_groups(groups)
    capped = [g for g in groups if g not in compared]
    if kind:
        doc.paragraph(f"No run of this study is on its full recipe: the curves below are its "
                      f"{kind} runs (dashed, faded), marked in the legends: "
                      + ", ".join(g.label for g in compared) + ".")
    monitor = " | test (monitor: the test set every epoch, not used for selection)"
    doc.figure(fig.save(curves.epoch_panels(compared, curves.ACCURACY_PANELS, "accuracy (%)",
                                            percent=True), fig_dir / "accuracy.png"),
               "Accuracy per epoch: training (on the epoch's augmented batches) | validation"
               + (monitor if _monitored(compared) else "") + _reported_accuracy_text(compared))
    doc.figure(fig.save(curves.epoch_panels(compared, curves.LOSS_PANELS, "loss"), fig_dir / "loss.png"),
               "Loss per epoch: training | validation" + (monitor if _monitored(compared) else "")
               + _reported_loss_text(compared))
    doc.figure(fig.save(curves.train_loss_curves(compared), fig_dir / "train_loss.png"),
               "Training loss against training images seen (smoothed; faint: as logged)")
    doc.figure(fig.save(curves.lr_curves(compared), fig_dir / "lr.png"),
               "Learning rate per training step (train_steps.jsonl)")
    _reported_times(doc, compared, fig_dir)
    if compared and capped:
        doc.figure(fig.save(curves.epoch_panels(capped, curves.ACCURACY_PANELS, "accuracy (%)",
                                                percent=True), fig_dir / "accuracy-capped.png"),
                   "Quick and capped runs only — smoke tests, not comparable with the runs "
                   "above: accuracy per epoch ("
                   + ", ".join(f"{g.label}: {g.capped}" for g in capped) + ")")


def per_run_section(doc: Document, groups: list[RunGroup], fig_dir: Path) -> None:
    """Each run's confusion matrix and gallery of misclassified test images."""
    doc.heading(3, "Per run")
    galleries = 0
    for g in groups:
        doc.figure(fig.save(fig.confusion_matrix(g), fig_dir / f"confusion-{slug(g.label)}.png"),
                   f"Confusion matrix: {g.label} (test set)")
        record = next((r for r in g.finished if r.misclassified_path), None)
        if record is not None:
            path = fig.save(fig.misclassified_gallery(record),
                            fig_dir / f"misclassified-{slug(g.label)}.png")
            galleries += path is not None
            doc.figure(path, f"Misclassified test images: {g.label} (predicted / true; the "
                             f"Grad-CAM heat map of the answer, where the run saved one)")
    if not galleries:
        doc.paragraph("No run directory holds `misclassified.pt`, so there is no gallery of "
                      "misclassified images.")


def _curve_sources(groups: list[RunGroup], metrics: tuple[str, ...]) -> list[str]:
    """``"lenet: 000:657-666 (the same values again on 000:872-881)"`` for each run with a lab
    report's per-epoch series of ``metrics`` (the study file's ``curves:``)."""
    out = []
    for g in groups:
        parts = []
        for metric in metrics:
            for c in curves.report_curves(g, metric):
                again = (f" (the same values again on {', '.join(c['sources'][1:])})"
                         if len(c["sources"]) > 1 else "")
                parts.append(c["sources"][0] + again)
        if parts:
            out.append(f"{g.label}: {', '.join(parts)}")
    return out


def _reported_accuracy_text(groups: list[RunGroup]) -> str:
    sources = _curve_sources(groups, ("train_acc", "val_acc"))
    return ("; dotted with open squares, in the run's colour: the lab report's own accuracy per "
            "epoch as it printed it (" + "; ".join(sources) + ")" if sources else "")


def _reported_loss_text(groups: list[RunGroup]) -> str:
    sources = _curve_sources(groups, ("train_loss", "val_loss"))
    return (". The lab report's printed losses per epoch (" + "; ".join(sources) + ") are not "
            "drawn: cnnbench's are per-image means, and the report's are not known to be "
            "(each series' note in the study file says what it is)" if sources else "")


def _reported_times(doc: Document, groups: list[RunGroup], fig_dir: Path) -> None:
    """cnnbench's time per epoch beside the lab report's printed one, on different machines."""
    path = fig.save(curves.epoch_time_curves(groups), fig_dir / "epoch_time.png")
    if path is None:
        return
    timed = [g for g in groups if curves.report_curves(g, "epoch_time_s")]
    machines = []
    for r in (r for g in timed for r in g.records if r.summary):
        text = tables.device_text(r)
        if text == "cpu" and r.summary.get("cpu"):
            threads = r.summary.get("num_threads")
            text += f" ({r.summary['cpu']}" + (f", {threads} threads)" if threads else ")")
        if text not in machines:
            machines.append(text)
    doc.figure(path, "Time per epoch in seconds (log scale): cnnbench's runs (solid; dashed and "
               "faded when capped) on " + (", ".join(machines) or "this machine")
               + ", beside the lab report's printed times (dotted, open squares; "
               + "; ".join(_curve_sources(timed, ("epoch_time_s",))) + "), converted to "
               "seconds. Different machines: the report timed its own hardware (notes below), "
               "so the gap is the hardware's as much as the code's.")
    doc.bullets([f"{g.label}, {', '.join(c['sources'])}: {c['note']}"
                 for g in timed for c in curves.report_curves(g, "epoch_time_s") if c["note"]])


def _monitored(groups: list[RunGroup]) -> bool:
    return any("epoch_test_acc" in m for g in groups for r in g.records for m in r.metrics)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"
