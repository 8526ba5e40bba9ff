"""The report's uncertainty: the statistics pinned to known values, the results table's
interval cell, results.csv's interval columns and the reproduction table's "inside" column."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from cnnbench.report import reproduction, tables, write_report
from cnnbench.report.records import group_runs, load_runs, study_references
from cnnbench.report.stats import holm, mcnemar_exact, seed_stats, wilson_interval
from report_fixtures import write_fake_run


def planted(n: int, wrong: set[int]) -> tuple[list[int], list[int]]:
    """``(predictions, targets)`` of ``n`` test images, wrong exactly on ``wrong``."""
    targets = [i % 10 for i in range(n)]
    return [(t + 1) % 10 if i in wrong else t for i, t in enumerate(targets)], targets


# --------------------------------------------------------------------------- the statistics

def test_wilson_interval_is_scipys_and_the_textbooks():
    low, high = wilson_interval(95, 100)
    ci = scipy_stats.binomtest(95, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert (low, high) == pytest.approx((0.8882, 0.9785), abs=5e-5)  # Wilson (1927) by hand
    wide = wilson_interval(95, 100, confidence=0.99)
    assert wide[0] < low and wide[1] > high
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    for bad in ((1, 0), (11, 10), (-1, 10)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)


def test_seed_stats_is_the_t_interval_of_the_mean():
    s = seed_stats([0.90, 0.92, None, 0.94])  # unset values are left out
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.92), pytest.approx(0.02))
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, 2 df)
    assert (s.low, s.high) == pytest.approx((0.92 - half, 0.92 + half), abs=1e-6)
    assert seed_stats([0.9]) is None and seed_stats([]) is None


def test_mcnemar_exact_counts_the_discordant_pairs_each_way():
    # A right and B wrong on 10 images, A wrong and B right on 2, both right on 88
    pred_a, targets = planted(100, {10, 11})
    pred_b, _ = planted(100, set(range(10)))
    b, c, p = mcnemar_exact(pred_a, pred_b, targets)
    assert (b, c) == (10, 2)
    assert p == pytest.approx(0.0386, abs=5e-5)
    assert p == pytest.approx(2 * sum(math.comb(12, k) for k in range(10, 13)) / 2 ** 12)
    assert mcnemar_exact(pred_b, pred_a, targets) == (2, 10, pytest.approx(p))  # symmetric
    assert mcnemar_exact(pred_a, pred_a, targets) == (0, 0, 1.0)  # nothing discordant
    with pytest.raises(ValueError):
        mcnemar_exact(pred_a, pred_b[:-1], targets)


def test_holm_steps_down_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, then monotone
    assert holm([0.04]) == pytest.approx([0.04])  # one test: nothing to correct
    assert holm([]) == []


# --------------------------------------------------------------------------- the results table

def _results_row(root: Path, label: str) -> list[str]:
    header, rows = tables.results_table(group_runs(load_runs([root])))
    column = header.index(tables.TEST_ACC_HEADER)
    assert "95% CI" in header[column] and "Wilson" in header[column] and "t (seeds)" in header[column]
    return next(r for r in rows if r[0] == label)[column:column + 1]


def test_one_seed_shows_the_wilson_interval_of_its_predictions(tmp_path):
    run = write_fake_run(tmp_path / "saved", predictions=planted(1000, set(range(25))))
    assert _results_row(tmp_path, "saved") == ["97.50 [96.34, 98.30]"]  # 975 of 1000
    summary = json.loads((run / "summary.json").read_text())
    summary["split"] = {"train": 256, "val": 256, "test": 256}  # counted, not taken from here
    (run / "summary.json").write_text(json.dumps(summary))
    assert _results_row(tmp_path, "saved") == ["97.50 [96.34, 98.30]"]


def test_without_predictions_the_interval_comes_from_the_summary(tmp_path):
    write_fake_run(tmp_path / "a", test_acc=0.9)  # 256 test images: 230 right
    low, high = wilson_interval(230, 256)
    assert _results_row(tmp_path, "a") == [f"90.00 [{100 * low:.2f}, {100 * high:.2f}]"]
    run = write_fake_run(tmp_path / "b", test_acc=0.9)
    summary = json.loads((run / "summary.json").read_text())
    del summary["split"]  # nor a test size: no interval
    (run / "summary.json").write_text(json.dumps(summary))
    assert _results_row(run, "b") == ["90.00"]


def test_several_seeds_show_mean_std_and_the_t_interval(tmp_path):
    for seed, acc in ((0, 0.90), (1, 0.92), (2, 0.94)):
        write_fake_run(tmp_path / f"lenet-seed{seed}", test_acc=acc, seed=seed)
    [group] = group_runs(load_runs([tmp_path]))
    assert tables.accuracy_cell(group) == "92.00 ± 2.00 [87.03, 96.97]"


def test_results_csv_carries_each_directorys_interval(tmp_path):
    write_fake_run(tmp_path / "runs" / "saved", predictions=planted(1000, set(range(25))))
    write_fake_run(tmp_path / "runs" / "failed", model="simple_cnn", status="failed")
    files = write_report([tmp_path / "runs"], tmp_path / "out", figures=False)
    with files.csv.open() as fh:
        rows = {r["run"]: r for r in csv.DictReader(fh)}
    assert list(rows["saved"]).index("test_acc_ci_low") == list(rows["saved"]).index("test_acc") + 1
    assert float(rows["saved"]["test_acc"]) == pytest.approx(0.975)
    assert (float(rows["saved"]["test_acc_ci_low"]), float(rows["saved"]["test_acc_ci_high"])) \
        == pytest.approx(wilson_interval(975, 1000), abs=1e-6)
    assert rows["failed"]["test_acc_ci_low"] == rows["failed"]["test_acc_ci_high"] == ""


# --------------------------------------------------------------------------- reproduction

def _item(group, reference: dict, gaps: tuple[str, ...] = ()) -> reproduction.Reproduction:
    [ref] = study_references({"reference": [reference]})
    ms = group.quantity(ref["metric"])
    scale = 100.0 if ref["kind"] == "accuracy" else 1.0
    return reproduction.Reproduction(group, ref, (scale * ms[0], scale * ms[1]), gaps)


def test_the_reports_number_inside_or_outside_cnnbenchs_interval(tmp_path):
    write_fake_run(tmp_path / "net", profile="full", limited=False,
                   predictions=planted(1000, set(range(25))))  # 97.50 [96.34, 98.30]
    [group] = group_runs(load_runs([tmp_path]))
    cases = {97.0: "inside", 98.2: "inside", 98.4: "outside (above)", 99.0: "outside (above)",
             96.4: "inside", 96.2: "outside (below)", 95.0: "outside (below)",
             (98.0, 99.0): "inside",              # a published range that overlaps
             (98.5, 99.0): "outside (above)", (90.0, 96.0): "outside (below)"}
    for value, expected in cases.items():
        item = _item(group, {"metric": "test_acc", "value": list(value) if isinstance(
            value, tuple) else value})
        assert item.difference is not None
        assert reproduction.interval_position(item) == expected, value
        assert reproduction.cnnbench_interval(item) == pytest.approx((96.3355, 98.3010), abs=1e-3)
    # not comparable (no difference): a dash, as in the difference column
    assert reproduction.interval_position(_item(group, {"metric": "test_acc", "value": 99.0},
                                                gaps=("quick smoke test",))) == "—"
    loss = _item(group, {"metric": "test_loss", "value": 0.1, "comparable": True})
    assert loss.difference is not None and reproduction.interval_position(loss) == "—"
    assert reproduction.cnnbench_interval(loss) is None


def test_other_accuracies_use_their_split_or_the_seeds(tmp_path):
    write_fake_run(tmp_path / "one", profile="full", limited=False, test_acc=0.9)
    [group] = group_runs(load_runs([tmp_path]))
    val = _item(group, {"metric": "best_val_acc", "value": 50.0})  # 0.91 on 256 val images
    low, high = wilson_interval(round(0.91 * 256), 256)
    assert reproduction.cnnbench_interval(val) == pytest.approx((100 * low, 100 * high))
    assert reproduction.interval_position(val) == "outside (below)"
    train = _item(group, {"metric": "train_acc", "value": 90.0})  # no fixed image count
    assert reproduction.cnnbench_interval(train) is None
    assert reproduction.interval_position(train) == "—"
    for seed, acc in ((0, 0.90), (1, 0.92), (2, 0.94)):
        write_fake_run(tmp_path / "seeds" / f"s{seed}", test_acc=acc, seed=seed, profile="full",
                       limited=False)
    [seeds] = group_runs(load_runs([tmp_path / "seeds"]))
    item = _item(seeds, {"metric": "test_acc", "value": 97.5})
    assert reproduction.cnnbench_interval(item) == pytest.approx((87.03, 96.97), abs=5e-3)
    assert reproduction.interval_position(item) == "outside (above)"


def test_reproduction_csv_has_the_interval_and_the_position(tmp_path):
    run = write_fake_run(tmp_path / "net", profile="full", limited=False,
                         predictions=planted(1000, set(range(25))))
    (run / "study.json").write_text(json.dumps({
        "study": "demo", "run": "net", "name": "net", "profile": "full", "options": {}, "recipe": {},
        "reference": [{"metric": "test_acc", "value": 99.0}, {"metric": "test_loss",
                                                              "value": 0.2}]}))
    files = write_report([tmp_path], figures=False)
    with files.reproduction_csv.open() as fh:
        acc, loss = list(csv.DictReader(fh))
    assert (float(acc["cnnbench_ci_low"]), float(acc["cnnbench_ci_high"])) == pytest.approx(
        (96.3355, 98.3010), abs=1e-3)
    assert acc["report_in_ci"] == ("outside (above)" if acc["difference"] else "")
    assert loss["cnnbench_ci_low"] == loss["report_in_ci"] == ""
