"""The report's figures read well for short runs (matplotlib Figure objects, no files).

A one-epoch run is one point per series: it must be visible (a marker) and labelled with
its value, on a y range wider than matplotlib's hairline band around it; epoch axes tick
whole epochs; log axes read 0.3 or 100k, not 3×10⁻¹; legends list the runs drawn, only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cnnbench.report import curves
from cnnbench.report import figures as fig
from cnnbench.report.records import group_runs, load_runs
from report_fixtures import write_fake_run


def groups_of(root: Path):
    return group_runs(load_runs([root]))


def one_epoch_runs(root: Path, accs=(0.91, 0.93, 0.95)) -> Path:
    """Quick runs as ``--profile quick`` leaves them: one epoch, no logged step."""
    for i, acc in enumerate(accs):
        run = write_fake_run(root / f"run{i}", model=f"model{i}", test_acc=acc, epochs=1)
        (run / "train_steps.jsonl").write_text("")  # 2 steps < log_every: nothing logged
    return root


def drawn(figure):
    figure.draw_without_rendering()  # lays out ticks and their labels
    return figure.axes[0]


def data_lines(ax):
    """The runs' lines (not the error bars' or the legend's)."""
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def visible_ticks(ax, axis: str) -> list[float]:
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    return [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]


def tick_texts(ax, axis: str) -> list[str]:
    labels = (ax.get_xticklabels(which="both") if axis == "x"
              else ax.get_yticklabels(which="both"))
    return [t.get_text() for t in labels if t.get_text()]


def test_one_epoch_curves_have_markers_values_and_a_readable_range(tmp_path):
    groups = groups_of(one_epoch_runs(tmp_path))
    ax = drawn(curves.epoch_curves(groups, "val_acc", "validation accuracy (%)",
                                       percent=True))
    lines = data_lines(ax)
    assert len(lines) == 3
    for line in lines:
        assert len(line.get_xdata()) == 1
        assert line.get_marker() not in (None, "None", "", " ") and line.get_markersize() >= 4
    texts = {t.get_text() for t in ax.texts}
    assert {"91.00", "93.00", "95.00"} <= texts  # each lone point says its value
    lo, hi = ax.get_ylim()
    assert lo < 91 and hi > 95  # every point inside the axes

    # one run: a single value gets a range around it, not 0.96-1.04 of it
    ax = drawn(curves.epoch_curves(groups[:1], "val_loss", "validation loss"))
    lo, hi = ax.get_ylim()
    value = data_lines(ax)[0].get_ydata()[0]
    assert lo < value < hi
    assert hi - lo >= 0.15 * value, (lo, hi, value)  # matplotlib alone: 0.11
    assert lo >= 0  # a loss axis does not go negative to centre a point


def test_flat_multi_epoch_series_gets_a_range_too(tmp_path):
    run = write_fake_run(tmp_path / "flat", epochs=4)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({**r, "val_acc": 0.5}) + "\n" for r in rows))
    ax = drawn(curves.epoch_curves(groups_of(tmp_path), "val_acc", "acc", percent=True))
    lo, hi = ax.get_ylim()
    assert lo < 50 < hi and hi - lo >= 7.5  # matplotlib alone: 47.25-52.75


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 30])
def test_epoch_axes_tick_whole_epochs(tmp_path, epochs):
    write_fake_run(tmp_path / "r", epochs=epochs)
    ax = drawn(curves.epoch_curves(groups_of(tmp_path), "val_loss", "validation loss"))
    ticks = visible_ticks(ax, "x")
    assert ticks, "the epoch axis has ticks"
    assert all(float(t).is_integer() for t in ticks), ticks
    assert all("." not in text for text in tick_texts(ax, "x")), tick_texts(ax, "x")
    lo, hi = ax.get_xlim()
    assert lo < 1 and hi > epochs  # every epoch inside the axes


def test_one_epoch_training_loss_is_visible_and_on_a_plain_log_axis(tmp_path):
    groups = groups_of(one_epoch_runs(tmp_path))
    ax = drawn(curves.train_loss_curves(groups))
    lines = data_lines(ax)
    assert len(lines) == 3
    for line in lines:  # one point from metrics.jsonl: a marker, or nothing is seen
        assert line.get_marker() not in (None, "None", "", " ")
    assert legend_labels(ax) == [f"{g.label} (quick)" for g in groups]  # fixture: quick runs
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert hi / lo >= 1.5  # a range, not a hairline
    labels = tick_texts(ax, "y")
    assert labels, "the log axis labels some ticks"
    for text in labels:
        assert "^" not in text and "times" not in text and "$" not in text, labels
        float(text)  # a plain number


def test_log_axes_over_decades_read_as_plain_numbers(tmp_path):
    run = write_fake_run(tmp_path / "long", epochs=20)  # 80 steps, loss 2.3 down to 0.26
    rows = [{"step": s, "images_seen": 64 * s, "train_loss": 3.0 * 0.9 ** s}
            for s in range(1, 81)]  # 2.7 down to 0.0006: four decades
    (run / "train_steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    big = write_fake_run(tmp_path / "big", model="vgg16")
    summary = json.loads((big / "summary.json").read_text())
    summary.update(params=138_000_000, macs=15_500_000_000)
    (big / "summary.json").write_text(json.dumps(summary))
    groups = groups_of(tmp_path)
    axes = [(drawn(curves.train_loss_curves(groups)), "y"),
            (drawn(fig.bar_chart(groups, [g.stat("params") for g in groups],
                                        "parameters", log=True)), "y"),
            (drawn(fig.accuracy_vs_macs(groups)), "x")]
    for ax, axis in axes:
        labels = tick_texts(ax, axis)
        assert len(labels) >= 2, labels
        for text in labels:
            assert "^" not in text and "times" not in text and "$" not in text, labels
    assert {"1M", "10M", "100M"} <= set(tick_texts(axes[1][0], "y"))


def test_legends_list_only_the_runs_that_drew(tmp_path):
    write_fake_run(tmp_path / "a-ok", model="lenet5", epochs=3)
    empty = write_fake_run(tmp_path / "b-failed-early", model="vgg16", status="failed")
    (empty / "metrics.jsonl").write_text("")
    (empty / "train_steps.jsonl").write_text("")
    nan = write_fake_run(tmp_path / "c-diverged", model="resnet18", epochs=2)
    rows = [json.loads(line) for line in (nan / "metrics.jsonl").read_text().splitlines()]
    (nan / "metrics.jsonl").write_text("".join(
        json.dumps({**r, "val_loss": math.nan, "train_loss": math.nan}) + "\n" for r in rows))
    (nan / "train_steps.jsonl").write_text("")
    groups = groups_of(tmp_path)
    assert [g.label for g in groups] == ["a-ok", "b-failed-early", "c-diverged"]

    ax = drawn(curves.epoch_curves(groups, "val_acc", "acc", percent=True))
    assert legend_labels(ax) == ["a-ok (quick)", "c-diverged (quick)"]  # c: accuracies, no losses
    ax = drawn(curves.epoch_curves(groups, "val_loss", "loss"))
    assert legend_labels(ax) == ["a-ok (quick)"]
    ax = drawn(curves.train_loss_curves(groups))
    assert legend_labels(ax) == ["a-ok (quick)"]
    assert len({line.get_color() for line in data_lines(ax)}) == 1  # a-ok's (faint + smoothed)

    # no run has data: no figure (and no file)
    assert curves.epoch_curves(groups[1:2], "val_acc", "acc") is None
    assert fig.save(curves.train_loss_curves(groups[1:]), tmp_path / "out" / "loss.png") is None
    assert not (tmp_path / "out").exists()


def test_a_seed_without_data_does_not_take_its_runs_label(tmp_path):
    """The legend names a run by its first seed that drew, not by its first seed."""
    first = write_fake_run(tmp_path / "lenet-seed0", seed=0)
    (first / "metrics.jsonl").write_text("")
    write_fake_run(tmp_path / "lenet-seed1", seed=1)
    groups = groups_of(tmp_path)
    assert len(groups) == 1
    ax = drawn(curves.epoch_curves(groups, "val_acc", "acc", percent=True))
    assert legend_labels(ax) == [f"{groups[0].label} (quick)"]


def test_figure_files_are_written_at_the_documented_dpi(tmp_path):
    from PIL import Image

    groups = groups_of(one_epoch_runs(tmp_path / "runs"))
    path = fig.save(curves.epoch_curves(groups, "val_acc", "acc", percent=True),
                    tmp_path / "f" / "val_acc.png")
    with Image.open(path) as image:
        width = image.size[0]
    assert width >= 0.8 * 7.5 * fig.DPI  # figsize 7.5 in, a tight bounding box


def _pixels(path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.info["dpi"] == pytest.approx((fig.DPI, fig.DPI), abs=0.1)
        return np.asarray(image.convert("RGB")).astype(int)


def _figure(legend_outside: bool):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5))
    ax = figure.subplots()
    for k in range(3):
        ax.plot(range(10), [(k + 1) * (i % 4) for i in range(10)], marker="o", label=f"run {k}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("validation")
    # beside the axes, where it sticks out of the figure
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0) if legend_outside else None)
    figure.subplots_adjust(bottom=0.2)  # room for the axis label
    return figure


@pytest.mark.parametrize("legend_outside", [False, True])
def test_a_saved_figure_is_what_matplotlibs_tight_box_gives(tmp_path, legend_outside, monkeypatch):
    """One drawing, cropped, gives matplotlib's bbox_inches="tight" picture: the same size
    within a pixel (the box is rounded to whole pixels), the same drawing at the same place
    within a pixel (antialiasing at another subpixel offset); a legend outside the figure
    is whole (matplotlib's savefig draws that one)."""
    import numpy as np
    from matplotlib.figure import Figure

    calls = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **kw: calls.append(a) or real(self, *a, **kw))
    ours = _pixels(fig.save(_figure(legend_outside), tmp_path / "ours.png"))
    assert len(calls) == legend_outside  # drawn once, unless it does not fit
    _figure(legend_outside).savefig(tmp_path / "tight.png", dpi=fig.DPI, bbox_inches="tight",
                                    pad_inches=fig.PAD_INCHES)
    tight = _pixels(tmp_path / "tight.png")
    assert abs(ours.shape[0] - tight.shape[0]) <= 1 and abs(ours.shape[1] - tight.shape[1]) <= 1
    rows, cols = min(ours.shape[0], tight.shape[0]), min(ours.shape[1], tight.shape[1])
    best = min(np.abs(ours[dy:rows - 1 + dy, dx:cols - 1 + dx] - tight[:rows - 1, :cols - 1]).mean()
               for dy in (0, 1) for dx in (0, 1))
    assert best < 2.5  # of 255; the same figure drawn 2 px to the side differs by about 9
    for edge in (ours[0], ours[-1], ours[:, 0], ours[:, -1]):  # the padding is background
        assert (edge == 255).all()


def profile_runs(root: Path) -> list:
    """A full run, a cpu run and a quick run of one study, the full one monitoring the test set."""
    for position, (name, profile, limited) in enumerate((("full-run", "full", False),
                                                          ("cpu-run", "cpu", True),
                                                          ("quick-run", "quick", True))):
        run = write_fake_run(root / name, profile=profile, limited=limited, epochs=4,
                             monitor_test=profile == "full")
        (run / "study.json").write_text(json.dumps({"study": "s", "run": name,
                                                    "position": position}))
    return groups_of(root)


def test_accuracy_panels_training_validation_and_the_test_monitor(tmp_path):
    groups = profile_runs(tmp_path)
    figure = curves.epoch_panels(groups, curves.ACCURACY_PANELS, "accuracy (%)", percent=True)
    figure.draw_without_rendering()
    assert [ax.get_title() for ax in figure.axes] == ["training", "validation", "test (monitor)"]
    train, val, test = figure.axes
    assert len(data_lines(train)) == len(data_lines(val)) == 3
    assert len(data_lines(test)) == 1  # only the full run evaluated the test set every epoch
    run = groups[0].first
    assert list(data_lines(train)[0].get_ydata()) == pytest.approx(
        [100 * m["train_acc"] for m in run.metrics])
    assert list(data_lines(test)[0].get_ydata()) == pytest.approx(
        [100 * m["epoch_test_acc"] for m in run.metrics])
    # a run's colour is the same in every panel
    assert data_lines(train)[0].get_color() == data_lines(test)[0].get_color()
    # without a monitored run there is no test panel
    figure = curves.epoch_panels(groups[1:], curves.LOSS_PANELS, "loss")
    assert [ax.get_title() for ax in figure.axes] == ["training", "validation"]
    assert curves.epoch_panels(groups, (("no_such_key", "x"),), "y") is None


def test_capped_runs_are_dashed_faded_and_marked_in_the_legend(tmp_path):
    groups = profile_runs(tmp_path)
    for figure in (curves.epoch_panels(groups, curves.ACCURACY_PANELS, "accuracy (%)", percent=True),
                   curves.epoch_curves(groups, "val_loss", "validation loss"),
                   curves.train_loss_curves(groups), curves.lr_curves(groups)):
        figure.draw_without_rendering()
        ax = figure.axes[-1] if len(figure.axes) > 1 else figure.axes[0]
        assert legend_labels(ax) == ["full-run", "cpu-run (cpu, capped)", "quick-run (quick)"]
        lines = {line.get_label(): line for a in figure.axes for line in data_lines(a)
                 if not line.get_label().startswith("_")}
        assert lines["full-run"].get_linestyle() == "-"
        for label in ("cpu-run (cpu, capped)", "quick-run (quick)"):
            assert lines[label].get_linestyle() == "--"
            assert lines[label].get_alpha() < lines["full-run"].get_alpha()


def test_learning_rate_per_step(tmp_path):
    run = write_fake_run(tmp_path / "a", epochs=2)
    steps = [json.loads(line) for line in (run / "train_steps.jsonl").read_text().splitlines()]
    ax = drawn(curves.lr_curves(groups_of(tmp_path)))
    [line] = data_lines(ax)
    assert list(line.get_xdata()) == [s["step"] for s in steps]
    assert list(line.get_ydata()) == pytest.approx([s["lr"] for s in steps])
    assert ax.get_xlabel() == "training step" and ax.get_ylim()[0] == 0.0
    # steps logged before the learning rate was: no figure
    (run / "train_steps.jsonl").write_text("".join(
        json.dumps({k: v for k, v in s.items() if k != "lr"}) + "\n" for s in steps))
    assert curves.lr_curves(groups_of(tmp_path)) is None
