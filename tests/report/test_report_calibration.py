"""The report's calibration view: a table across the networks and a reliability diagram, from
the numbers in each run's summary.json; nothing for runs that recorded none."""

from __future__ import annotations

import json
from pathlib import Path

from cnnbench.report import calibration, write_report
from cnnbench.report.records import group_runs, load_runs
from report_fixtures import table_rows, write_fake_run


def calibrated_run(root: Path, name: str, *, ece: float, temperature: float | None, seed: int = 0,
                   model: str = "lenet5") -> Path:
    run = write_fake_run(root / name, model=model, seed=seed)
    summary = json.loads((run / "summary.json").read_text())
    bins = {"bins": 15, "count": [0] * 12 + [10, 30, 60],
            "confidence": [None] * 12 + [0.83, 0.9, 0.97], "accuracy": [None] * 12 + [0.7, 0.8, 0.95]}
    summary.update(test_ece=ece, test_brier=0.2, test_loss=0.4, temperature=temperature,
                   test_ece_scaled=None if temperature is None else ece / 4,
                   test_nll_scaled=None if temperature is None else 0.3,
                   test_brier_scaled=None if temperature is None else 0.18,
                   reliability={"test": bins, "test_scaled": None})
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_the_table_has_each_run_before_and_after_scaling(tmp_path):
    calibrated_run(tmp_path, "lenet-a", ece=0.05, temperature=1.5)
    calibrated_run(tmp_path, "cnn-b", ece=0.12, temperature=None, model="simple_cnn")
    header, rows = calibration.calibration_table(group_runs(load_runs([tmp_path])))
    assert header[3:] == ["ECE", "NLL", "Brier", "T (fitted on val)", "ECE at T", "NLL at T",
                          "Brier at T"]
    by_run = {row[0]: row for row in rows}
    assert by_run["lenet-a"][3:] == ["0.0500", "0.4000", "0.2000", "1.500", "0.0125", "0.3000", "0.1800"]
    assert by_run["cnn-b"][3:6] == ["0.1200", "0.4000", "0.2000"] and by_run["cnn-b"][6:] == ["—"] * 4


def test_seeds_are_shown_as_mean_and_spread(tmp_path):
    calibrated_run(tmp_path, "lenet-seed0", ece=0.04, temperature=1.2, seed=0)
    calibrated_run(tmp_path, "lenet-seed1", ece=0.06, temperature=1.4, seed=1)
    [row] = calibration.calibration_table(group_runs(load_runs([tmp_path])))[1]
    assert row[3] == "0.0500 ± 0.0141" and row[6] == "1.300 ± 0.141"


def test_the_report_shows_the_section_and_the_diagram(tmp_path):
    calibrated_run(tmp_path / "runs", "lenet-a", ece=0.05, temperature=1.5)
    calibrated_run(tmp_path / "runs", "cnn-b", ece=0.12, temperature=0.8, model="simple_cnn")
    files = write_report([tmp_path / "runs"], tmp_path / "out", run_figures=False)
    md = files.markdown.read_text()
    assert "### Calibration" in md and "never the test set" in md
    assert [p.name for p in files.figures if p.name == "reliability.png"] == ["reliability.png"]
    section = md.split("### Calibration", 1)[1]
    assert section.index("| run | model | test acc (%) | ECE | NLL |") < section.index("reliability.png")
    assert sorted(r[0] for r in table_rows(section, "run")) == ["cnn-b", "lenet-a"]
