"""Evaluating a checkpoint again, on the split of the run that wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.config import TrainConfig
from cnnbench.errors import UserError
from cnnbench.training.build import build_training
from cnnbench.training.checkpoint import load_checkpoint
from cnnbench.training.rundata import check_same_data
from cnnbench.training.rundir import BEST


def evaluate_checkpoint(path: str | Path, split: str = "test", *, data_dir: str | None = None,
                        device: str | None = None, batch_size: int | None = None,
                        tta: str | None = None, allow_changed_data: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint (a run directory means its ``best.ckpt``) on its run's ``test``
    or ``val`` split, rebuilt from the config stored in it (same split seed, limits and
    normalisation), so ``best.ckpt`` reproduces the summary's ``test_acc`` exactly. Returns
    :func:`cnnbench.training.engine.evaluate`'s dict plus ``split``, ``checkpoint``, ``epoch``,
    ``model``, ``dataset`` and ``tta``. Data that changed since the run (other classes, another
    test set: the checkpoint records a fingerprint) is a one-line :class:`UserError`; with
    ``allow_changed_data`` only other classes are."""
    if split not in ("test", "val"):
        raise UserError(f"split must be test or val, got {split!r}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    path = Path(path)
    if path.is_dir():
        path = path / BEST
    state = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(state["config"], f"config in {path}")
    except UserError as exc:
        raise UserError(f"checkpoint {path} has an unusable config: {exc}") from None
    changes = {k: v for k, v in {"data_dir": data_dir, "device": device,
                                  "eval_batch_size": batch_size, "tta": tta}.items() if v is not None}
    training = build_training(config.replace(**changes), load_init_weights=False)
    check_same_data(state.get("data"), training.data.fingerprint(), str(path),
                    allow_changed_test=allow_changed_data)
    result = training.evaluate_weights(split, state["model"], source=str(path))
    return {**result, "split": split, "checkpoint": str(path), "epoch": state["epoch"],
            "model": training.config.model, "dataset": training.config.dataset,
            "tta": training.config.tta}
