"""Fake run directories for the study and report tests (no training).

``write_fake_run`` writes what ``cnnbench.training.train_run`` writes (docs/architecture.md,
"Runs"): config.yaml, metrics.jsonl, train_steps.jsonl, summary.json and, optionally,
misclassified.pt, with made-up numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from cnnbench.training.rundir import save_misclassified

CLASSES = [str(i) for i in range(10)]


def write_fake_run(run_dir: Path, *, model: str = "lenet5", dataset: str = "mnist",
                   test_acc: float = 0.9, seed: int = 0, epochs: int = 3,
                   status: str = "finished", profile: str | None = "quick",
                   config: dict | None = None, misclassified: bool = False,
                   limited: bool = True, monitor_test: bool = False,
                   predictions: tuple[list[int], list[int]] | None = None) -> Path:
    """``limited``: trained on 256 images (limit_train / limit_eval), as a quick run is;
    ``monitor_test``: the test set evaluated every epoch (``epoch_test_acc``);
    ``predictions``: ``(predictions, targets)`` written to test_predictions.json (the summary's
    ``test_acc`` and test split size then follow them); none by default."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    limit = 256 if limited else None
    cfg = {"model": model, "dataset": dataset, "epochs": epochs, "batch_size": 128,
           "optimizer": "adamw", "lr": 1e-3, "seed": seed, "limit_train": limit,
           "limit_eval": limit, "out": str(run_dir),
           **({"monitor_test": True} if monitor_test else {}), **(config or {})}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    with (run_dir / "metrics.jsonl").open("w") as fh:
        for epoch in range(1, epochs + 1):
            frac = epoch / epochs
            fh.write(json.dumps({
                "epoch": epoch, "train_loss": 2.0 * (1.1 - frac), "train_acc": test_acc * frac,
                "val_loss": 1.5 * (1.1 - frac), "val_acc": test_acc * frac, "lr": 1e-3,
                "batch_size": 128, "epoch_time_s": 1.0, "train_images_per_s": 256.0,
                "images_seen": 256 * epoch,
                **({"epoch_test_acc": (test_acc + 0.005) * frac} if monitor_test else {})}) + "\n")
    with (run_dir / "train_steps.jsonl").open("w") as fh:
        for step in range(1, 4 * epochs + 1):
            fh.write(json.dumps({"step": step, "images_seen": 64 * step,
                                 "train_loss": 2.3 / step ** 0.5,
                                 "lr": 1e-3 * (1 - (step - 1) / (4 * epochs))}) + "\n")
    confusion = [[0] * 10 for _ in range(10)]
    for i in range(10):
        confusion[i][i] = int(round(100 * test_acc))
        confusion[i][(i + 1) % 10] = 100 - confusion[i][i]
    summary = {
        "name": run_dir.name, "model": model, "dataset": dataset, "stem": None,
        "params": 61706, "macs": 429000, "flops": 858000, "input_size": [1, 28, 28],
        "seed": seed, "device": "cpu", "epochs": epochs, "epochs_completed": epochs,
        "train_time_s": 12.5, "eval_time_s": 1.5, "train_images_per_s": 256.0,
        "best_val_acc": test_acc + 0.01, "best_epoch": epochs, "test_acc": test_acc,
        "test_loss": 0.3, "per_class_test_acc": [test_acc] * 10,
        "confusion_matrix": confusion, "classes": CLASSES,
        "split": {"train": 256, "val": 256, "test": 256}, "limited": limited,
        "limit_train": limit, "limit_eval": limit, "recipe": None, "profile": profile, "tta": "none",
        "torch_version": torch.__version__, "torchvision_version": "0.0-test",
        "cnnbench_version": "0.1.0", "git_commit": "abc1234", "command": "cnnbench train",
        "status": status, "hostname": "testhost", "cpu": "test cpu", "num_threads": 2,
        "tested_weights": "best",
    }
    if monitor_test:
        summary["max_epoch_test_acc"] = test_acc + 0.005
    if predictions is not None:
        preds, targets = (list(map(int, x)) for x in predictions)
        (run_dir / "test_predictions.json").write_text(json.dumps(
            {"predictions": preds, "targets": targets, "tested_weights": "best"}))
        summary["test_acc"] = sum(p == t for p, t in zip(preds, targets)) / len(targets)
        summary["split"] = {**summary["split"], "test": len(targets)}
    if status != "finished":
        for key in ("test_acc", "best_val_acc", "confusion_matrix"):
            summary.pop(key)
        (run_dir / "error.txt").write_text("Traceback (most recent call last):\n"
                                           "RuntimeError: out of memory\n")
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if misclassified:  # 8 test images, 5 of them wrong
        images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
        save_misclassified(run_dir, images, torch.tensor([1, 2, 3, 4, 5, 5, 6, 7]),
                           torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]))
    return run_dir


def table_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The body rows of the first Markdown table whose first header cell is ``first_header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows
