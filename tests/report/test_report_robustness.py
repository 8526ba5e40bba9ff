"""The report's robustness view: networks ranked by accuracy under corruption, and the
accuracy-against-severity curves, from each run's corruptions.json."""

from __future__ import annotations

import json
from pathlib import Path

from cnnbench.report import calibration, robustness, write_report
from cnnbench.report.records import group_runs, load_runs
from report_fixtures import table_rows, write_fake_run


def robust_run(root: Path, name: str, clean: float, rows: dict[str, list[float]],
               dataset: str = "mnist") -> Path:
    run = write_fake_run(root / name, model=name, dataset=dataset)
    accs = [a for v in rows.values() for a in v]
    mean = sum(accs) / len(accs)
    (run / "corruptions.json").write_text(json.dumps({
        "model": name, "n": 200, "clean_acc": clean, "accuracy": rows, "severities": [1, 2, 3, 4, 5],
        "mean_corruption_acc": mean, "relative_drop": (clean - mean) / clean,
        "per_corruption_mean": {k: sum(v) / len(v) for k, v in rows.items()}}))
    return run


def test_the_networks_are_ranked_by_accuracy_under_corruption(tmp_path):
    robust_run(tmp_path, "lenet5", 0.99, {"rotation": [0.9] * 5, "jpeg": [0.98] * 5})
    robust_run(tmp_path, "alexnet", 0.995, {"rotation": [0.95] * 5, "jpeg": [0.99] * 5})
    write_fake_run(tmp_path / "vgg16", model="vgg16")  # never evaluated so: not in the table
    robust_run(tmp_path, "cnn-fashion", 0.5, {"rotation": [0.4] * 5}, dataset="fashion_mnist")
    header, rows = robustness.robustness_table(group_runs(load_runs([tmp_path])))
    # ranked within each dataset: accuracies compare only on one
    assert [r[:3] for r in rows] == [["mnist", "1", "alexnet"], ["mnist", "2", "lenet5"],
                                     ["fashion_mnist", "1", "cnn-fashion"]]
    assert rows[0][4] == "200"
    assert rows[1][5:] == ["99.00", "94.00", "5.1", "rotation (90.0)"]


def test_the_report_shows_the_table_and_the_curves(tmp_path):
    robust_run(tmp_path / "runs", "lenet5", 0.99, {"rotation": [0.9, 0.8, 0.7, 0.6, 0.5]})
    files = write_report([tmp_path / "runs"], tmp_path / "out", run_figures=False)
    md = files.markdown.read_text()
    section = md.split("### Robustness to common corruptions", 1)[1]
    assert [r[2] for r in table_rows(section, "dataset")] == ["lenet5"]
    assert "corruptions.png" in [p.name for p in files.figures]
    fig = robustness.severity_figure(group_runs(load_runs([tmp_path / "runs"])))
    [line] = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0, 1, 2, 3, 4, 5]
    assert [round(y, 6) for y in line.get_ydata()] == [99.0, 90.0, 80.0, 70.0, 60.0, 50.0]


def test_runs_without_calibration_or_corruption_results_get_neither_section(tmp_path):
    write_fake_run(tmp_path / "runs" / "old")  # written before either existed
    files = write_report([tmp_path / "runs"], tmp_path / "out", run_figures=False)
    md = files.markdown.read_text()
    assert "Robustness" not in md and "### Calibration" not in md
    assert not [p for p in files.figures if p.name in ("reliability.png", "corruptions.png")]
    groups = group_runs(load_runs([tmp_path / "runs"]))
    assert robustness.severity_figure(groups) is None and calibration.reliability_figure(groups) is None
