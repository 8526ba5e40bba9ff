"""Optuna, imported on first use (the ``search`` extra), and the pruners a search offers.
Importing this module imports neither Optuna nor torch (``cnnbench search --help`` reads
:data:`PRUNERS` from here)."""

from __future__ import annotations

from cnnbench.errors import UserError

PRUNERS = ("median", "halving", "none")


def load_optuna():
    """The ``optuna`` module, quiet, or a one-line error naming the extra to install."""
    from cnnbench.extras import require

    (optuna,) = require("search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_pruner(optuna, name: str):
    """The pruner named ``name`` (one of :data:`PRUNERS`)."""
    if name == "median":  # a trial below the median of earlier trials at the same epoch
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
