"""cnnbench.report.records: where each quantity a reference can quote is read from a run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnbench.reference_metrics import REFERENCE_METRICS
from cnnbench.report.records import QUANTITIES, Quantity, RunRecord


def record(summary: dict, metrics: list[dict]) -> RunRecord:
    return RunRecord(path=Path("run"), config={}, summary=summary, metrics=metrics, steps=[],
                     study={}, error=None)


# two epochs, then a line without an epoch (the test set's line): it is no epoch
METRICS = [{"epoch": 1, "val_acc": 0.5, "train_acc": 0.4, "val_loss": 1.5, "train_loss": 1.7,
            "epoch_time_s": 3.0, "epoch_test_acc": 0.45},
           {"epoch": 2, "val_acc": 0.7, "train_acc": 0.8, "val_loss": 0.9, "train_loss": 0.6,
            "epoch_time_s": 5.0, "epoch_test_acc": 0.65},
           {"test_acc": 0.69, "val_acc": 0.1, "train_acc": 0.2}]
SUMMARY = {"test_acc": 0.69, "best_val_acc": 0.7, "test_loss": 0.95, "train_time_s": 8.5,
           "params": 61706, "max_epoch_test_acc": 0.66}


@pytest.mark.parametrize("metric, value", [
    ("test_acc", 0.69), ("best_val_acc", 0.7), ("test_loss", 0.95), ("train_time_s", 8.5),
    ("params", 61706.0),
    ("val_acc", 0.7), ("train_acc", 0.8), ("val_loss", 0.9), ("train_loss", 0.6),  # last epoch
    ("epoch_time_s", 4.0),  # the mean over the epochs
    ("epoch1_test_acc", 0.45),  # the first epoch's
    ("max_epoch_test_acc", 0.66),  # the summary's, where the run wrote it
])
def test_each_quantity_is_read_from_its_place(metric, value):
    got = QUANTITIES[metric].read(record(SUMMARY, METRICS))
    assert got == value and isinstance(got, float)


def test_a_run_without_the_numbers_has_none_and_older_runs_their_epochs_best():
    empty = record({"params": True}, [{"loss": 1.0}])  # a bool is no number
    assert all(q.read(empty) is None for q in QUANTITIES.values())
    # a run from before max_epoch_test_acc was written: the best of its epochs
    older = record({}, [*METRICS[:2], {"epoch": 3, "epoch_test_acc": None}])
    assert QUANTITIES["max_epoch_test_acc"].read(older) == 0.65
    assert QUANTITIES["epoch1_test_acc"].read(record({}, METRICS[1:])) is None  # no epoch 1
    assert QUANTITIES["epoch_time_s"].read(record({}, [{"epoch": 1, "epoch_time_s": 2}])) == 2.0


def test_every_reference_metric_has_a_quantity_and_an_unknown_place_is_refused():
    assert set(QUANTITIES) == set(REFERENCE_METRICS)
    with pytest.raises(ValueError, match="unknown place 'nowhere'"):
        Quantity("x", "nowhere", "test_acc").read(record(SUMMARY, METRICS))


def test_a_reference_scales_by_its_unit_only_for_times():
    from cnnbench.report.records import reference_value

    assert reference_value({"kind": "time", "unit": "min", "value": 2}) == 120.0
    assert reference_value({"kind": "time", "value": 2}) == 2.0  # no unit: seconds
    assert reference_value({"kind": "count", "unit": "min", "value": 2}) == 2.0  # not a time


def test_a_group_has_no_value_of_a_quantity_cnnbench_does_not_know():
    from cnnbench.report.records import RunGroup

    group = SimpleNamespace(finished=[record(SUMMARY, METRICS)])
    assert RunGroup.quantity(group, "no_such_metric") is None
    assert RunGroup.quantity(group, "test_acc") == (0.69, 0.0)
