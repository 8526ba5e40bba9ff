"""The report's cost view: the Pareto front, the table of costs with the measured latencies,
and the accuracy-against-cost figure."""

from __future__ import annotations

import json
from pathlib import Path

from cnnbench.report import cost, write_report
from cnnbench.report.records import group_runs, load_runs
from report_fixtures import table_rows, write_fake_run


def test_the_pareto_front_keeps_only_networks_nothing_beats():
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.93), (2.0, 0.80), (5.0, 0.99), (1.0, 0.85)]
    assert cost.pareto_front(points) == [0, 1, 4]
    assert cost.pareto_front([(1.0, 0.9), (1.0, 0.9)]) == [0]  # a tie is one point
    assert cost.pareto_front([]) == []


def timed_run(root: Path, name: str, acc: float, ms: float | None, macs: int,
              dataset: str = "mnist") -> Path:
    run = write_fake_run(root / name, model=name, test_acc=acc, dataset=dataset)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(macs=macs, train_time_s=30.0, epochs_completed=3)
    (run / "summary.json").write_text(json.dumps(summary))
    if ms is not None:
        (run / "latency.json").write_text(json.dumps({
            "device_name": "AMD EPYC", "threads": 2,
            "eager": {"batch1_ms": ms, "batch256_images_per_s": 1000 / ms * 50},
            "onnxruntime": {"batch1_ms": ms / 4, "batch256_images_per_s": 1000 / ms * 150}}))
    return run


def test_the_table_and_figure_mark_the_front(tmp_path):
    timed_run(tmp_path, "small", 0.90, 0.2, 300_000)
    timed_run(tmp_path, "big", 0.95, 3.0, 20_000_000)
    timed_run(tmp_path, "slow", 0.92, 5.0, 9_000_000)  # slower and worse than big
    timed_run(tmp_path, "unmeasured", 0.97, None, 1_000_000)
    timed_run(tmp_path, "cifar", 0.60, 9.0, 20_000_000, dataset="cifar10")  # its own front
    groups = group_runs(load_runs([tmp_path]))
    header, rows = cost.cost_table(groups)
    by_run = {r[0]: dict(zip(header, r)) for r in rows}
    assert by_run["small"]["Pareto (latency)"] == by_run["big"]["Pareto (latency)"] == "yes"
    assert by_run["slow"]["Pareto (latency)"] == "" and by_run["unmeasured"]["Pareto (latency)"] == "—"
    assert by_run["cifar"]["Pareto (latency)"] == "yes"  # slower and worse, but on another dataset
    assert by_run["big"]["batch 1 (ms): PyTorch"] == "3" and by_run["big"]["batch 1: ONNX Runtime"] == "0.75"
    assert by_run["big"]["batch 256: ONNX Runtime"] == "50k"
    assert by_run["small"]["train time / epoch"] == "10.0 s"
    fig = cost.cost_figure(groups)
    assert len(fig.axes) == 6  # a row of three costs per dataset
    assert [ax.get_xlabel() for ax in fig.axes[:3]] == [
        "MACs per image", "training time per epoch (s)", "latency at batch 1 (ms, PyTorch)"]
    front = [line for line in fig.axes[0].get_lines() if line.get_label() == "Pareto front"][0]
    assert list(front.get_xdata()) == [300_000, 1_000_000]  # small, then unmeasured (MACs panel)
    [cifar] = [line for line in fig.axes[3].get_lines() if line.get_label() == "Pareto front"]
    assert list(cifar.get_xdata()) == [20_000_000]


def test_the_report_has_the_section_with_where_it_was_measured(tmp_path):
    timed_run(tmp_path / "runs", "small", 0.90, 0.2, 300_000)
    timed_run(tmp_path / "runs", "big", 0.95, 3.0, 20_000_000)
    files = write_report([tmp_path / "runs"], tmp_path / "out", run_figures=False)
    section = files.markdown.read_text().split("### Accuracy against cost", 1)[1]
    assert "measured on AMD EPYC (2 threads)" in section.split("\n\n")[1]
    assert sorted(r[0] for r in table_rows(section, "run")) == ["big", "small"]
    assert "cost.png" in [p.name for p in files.figures]


def test_without_measured_latencies_no_section(tmp_path):
    timed_run(tmp_path / "runs", "small", 0.90, None, 300_000)
    timed_run(tmp_path / "runs", "big", 0.95, None, 20_000_000)
    files = write_report([tmp_path / "runs"], tmp_path / "out", figures=False)  # a view's table stays
    assert "Accuracy against cost" not in files.markdown.read_text()
