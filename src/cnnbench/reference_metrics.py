"""What a lab report's published number may be, shared by the study files (which quote them)
and the report (which sets cnnbench's value beside them).

``REFERENCE_METRICS`` maps each metric a study's ``reference:`` may name to its kind:
accuracies in percent (fractions in the run files), losses as printed, times in seconds (or a
``unit`` of ``TIME_UNITS``), parameter counts. ``epoch1_test_acc`` is the test accuracy after
the first epoch (``metrics.jsonl``'s ``epoch_test_acc`` of epoch 1, from a run with
``monitor_test``), for reports that say how far one epoch got.
"""

REFERENCE_METRICS = {
    "test_acc": "accuracy", "val_acc": "accuracy", "best_val_acc": "accuracy",
    "max_epoch_test_acc": "accuracy", "epoch1_test_acc": "accuracy", "train_acc": "accuracy",
    "test_loss": "loss", "val_loss": "loss", "train_loss": "loss",
    "epoch_time_s": "time", "train_time_s": "time", "params": "count",
}
TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}  # a time reference's `unit`, in seconds
