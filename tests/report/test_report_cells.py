"""The report's cell formats (cnnbench.report.cells), pinned: what a reader sees in every table."""

from __future__ import annotations

from cnnbench.report import cells


def test_cell_formats():
    assert cells.pct(None) == "—" and cells.pct((0.91234, 0.0)) == "91.23"
    assert cells.pct((0.91234, 0.00456), 3) == "91.23 ± 0.46"  # the spread only for several seeds
    assert cells.signed(None) == "—" and cells.signed(1.5) == "+1.50" and cells.signed(-0.25) == "-0.25"
    assert [cells.count(v) for v in (None, 999, 61_706, 11_173_962, 1.2e9)] == [
        "—", "999", "61.7k", "11.2M", "1.2G"]
    assert [cells.duration(s) for s in (None, 3.14159, 75.0, 210.0, 9000.0)] == [
        "—", "3.14 s", "75.0 s", "3.5 min", "2.50 h"]


def test_reference_text_shows_ranges_and_the_reports_measure():
    assert cells.reference_text(None) == "—" and cells.reference_text({"value": None}) == "—"
    assert cells.reference_text({"value": 89.5}) == "89.5"
    assert cells.reference_text({"value": [64, 68]}) == "64–68"
    assert cells.reference_text({"value": 91.3, "metric": "val_acc"}) == "91.3 (val)"
    assert cells.reference_text({"value": 91.3, "metric": "test_acc"}) == "91.3"


def test_option_values_as_the_recipe_table_shows_them():
    assert [cells.value_text(v) for v in (None, "", 0.001, 3e-4, [1, 28, 28], [0.5, 0.5],
                                          {"widths": [8, 16]}, "adamw", 128)] == [
        "—", "—", "0.001", "0.0003", "1x28x28", "[0.5, 0.5]", "widths=[8, 16]", "adamw", "128"]
