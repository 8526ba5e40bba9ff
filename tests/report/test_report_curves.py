"""A lab report's own per-epoch numbers (study.json `curves`, from the study file's `curves:`)
drawn beside cnnbench's: its accuracies in the accuracy figure's panels, its times per epoch in
a figure of their own, its losses nowhere; a run directory without them draws as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnbench.report import curves
from cnnbench.report import write_report
from cnnbench.report.records import group_runs, load_runs
from report_fixtures import write_fake_run

VAL = {"metric": "val_acc", "unit": "%", "source": "000:699-701",
       "points": [[1, 97.550036], [2, 98.400070], [3, 98.700034]], "note": "as printed"}
VAL_AGAIN = dict(VAL, source="000:872-874")  # the report printed the same run twice
LOSS = {"metric": "train_loss", "unit": None, "source": "000:699-701",
        "points": [[1, 3.954735], [2, 2.731162], [3, 2.297861]], "note": "summed over batches"}
TIME = {"metric": "epoch_time_s", "unit": "min", "source": "000:699-701",
        "points": [[1, 3.3726], [2, 3.3731], [3, 3.3796]], "note": "4 GB laptop GPU"}
TIME_AGAIN = dict(TIME, source="000:872-874", points=[[1, 3.5], [2, 3.6], [3, 3.7]])


def runs(root: Path, curves: dict[str, list | None]) -> list:
    """One full-profile study run per entry, with these curves in study.json (``None``: an
    older study.json without the key)."""
    for position, (name, items) in enumerate(curves.items()):
        run = write_fake_run(root / name, profile="full", limited=False, epochs=3)
        meta = {"study": "s", "run": name, "position": position}
        if items is not None:
            meta["curves"] = items
        (run / "study.json").write_text(json.dumps(meta))
    return group_runs(load_runs([root]))


def lines_of(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def labels_of(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def accuracy_figure(groups):
    figure = curves.epoch_panels(groups, curves.ACCURACY_PANELS, "accuracy (%)", percent=True)
    figure.draw_without_rendering()
    return figure


def test_the_validation_panel_has_the_reports_accuracy_in_the_runs_colour(tmp_path):
    groups = runs(tmp_path, {"alexnet": [VAL, VAL_AGAIN, LOSS, TIME], "lenet": None})
    train, val = accuracy_figure(groups).axes
    assert len(lines_of(train)) == 2  # the report printed no training accuracy
    by_label = {line.get_label(): line for line in lines_of(val)}
    # the report printed the same values twice: drawn once
    assert set(by_label) == {"alexnet", "lenet", "alexnet (report 000)"}
    report = by_label["alexnet (report 000)"]
    assert list(report.get_xdata()) == [1, 2, 3]
    assert list(report.get_ydata()) == [97.550036, 98.400070, 98.700034]  # percent as printed
    assert report.get_color() == by_label["alexnet"].get_color() != by_label["lenet"].get_color()
    assert report.get_linestyle() == ":" and report.get_marker() == "s"
    assert by_label["alexnet"].get_linestyle() == "-"
    assert labels_of(val) == ["alexnet", "lenet", "alexnet (report 000)"]
    lo, hi = val.get_ylim()
    assert lo < 97.55 and hi > 98.7


def test_runs_without_curves_draw_as_before(tmp_path):
    """An older study.json (no `curves`), an empty list and one with only losses and times
    give the same accuracy figure, line for line, as no study.json curves at all."""
    def drawn(root, curves):
        figure = accuracy_figure(runs(root, curves))
        return [[(line.get_label(), list(line.get_xdata()), list(line.get_ydata()),
                  line.get_linestyle()) for line in lines_of(ax)] for ax in figure.axes]

    before = drawn(tmp_path / "old", {"alexnet": None, "lenet": None})
    assert drawn(tmp_path / "empty", {"alexnet": [], "lenet": None}) == before
    assert drawn(tmp_path / "other", {"alexnet": [LOSS, TIME], "lenet": None}) == before
    assert drawn(tmp_path / "junk", {"alexnet": [{"metric": "val_acc", "points": "x"}, 3],
                                     "lenet": "no"}) == before


def test_the_reports_losses_are_never_drawn(tmp_path):
    groups = runs(tmp_path, {"alexnet": [VAL, LOSS, TIME]})
    figure = curves.epoch_panels(groups, curves.LOSS_PANELS, "loss")
    figure.draw_without_rendering()
    assert all("report" not in line.get_label() for ax in figure.axes for line in lines_of(ax))
    assert sum(len(lines_of(ax)) for ax in figure.axes) == 2  # cnnbench's training, validation


def test_time_per_epoch_beside_the_reports_in_seconds(tmp_path):
    groups = runs(tmp_path, {"alexnet": [VAL, TIME, TIME_AGAIN], "lenet": None})
    figure = curves.epoch_time_curves(groups)
    figure.draw_without_rendering()
    ax = figure.axes[0]
    by_label = {line.get_label(): line for line in lines_of(ax)}
    # only the run the report timed; two different series of it: their lines in the label
    assert set(by_label) == {"alexnet", "alexnet (report 000, lines 699-701)",
                             "alexnet (report 000, lines 872-874)"}
    first = by_label["alexnet (report 000, lines 699-701)"]
    assert list(first.get_ydata()) == pytest.approx([60 * 3.3726, 60 * 3.3731, 60 * 3.3796])
    assert list(by_label["alexnet"].get_ydata()) == [1.0, 1.0, 1.0]  # metrics.jsonl seconds
    assert first.get_color() == by_label["alexnet"].get_color()
    assert first.get_linestyle() == ":"
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    # no run with the report's times: no figure
    assert curves.epoch_time_curves(runs(tmp_path / "none", {"a": [VAL], "b": None})) is None


def test_the_report_captions_name_the_source_lines(tmp_path):
    runs(tmp_path / "runs", {"alexnet": [VAL, VAL_AGAIN, LOSS, TIME], "lenet": None})
    files = write_report([tmp_path / "runs"], tmp_path / "out", run_figures=False)
    md = files.markdown.read_text()
    assert ("dotted with open squares, in the run's colour: the lab report's own accuracy per "
            "epoch as it printed it (alexnet: 000:699-701 (the same values again on "
            "000:872-874))") in md
    assert "printed losses per epoch (alexnet: 000:699-701) are not drawn" in md
    assert (tmp_path / "out" / "figures" / "s" / "epoch_time.png").exists()
    assert ("beside the lab report's printed times (dotted, open squares; "
            "alexnet: 000:699-701)") in md
    assert "Different machines" in md and "4 GB laptop GPU" in md
    # without curves: no time figure, no caption about the report
    files = write_report([tmp_path / "runs" / "lenet"], tmp_path / "plain", run_figures=False)
    md = files.markdown.read_text()
    assert "epoch_time.png" not in md and "lab report's own accuracy" not in md
