"""Training: one run from a config to a run directory.

``build`` (:func:`build_training`: data, model, loaders, optimizer, schedule, techniques, in
one object whose methods are the steps of the loop), ``run`` (:func:`train_run`: the loop,
logs, checkpoints, the summary), ``evaluate`` (:func:`evaluate_checkpoint`), ``rundir`` (the
run directory's files), and the pieces they use: ``engine`` (``train_one_epoch``,
``evaluate``), ``optim`` (optimizers, parameter groups, schedules), ``checkpoint``, ``ema``,
``whitening``, ``tta``, ``transfer`` (``--init``, ``--pretrained``, freezing), ``rundata``
(splits, limits, loaders), ``machine`` (device, seeds, provenance) and ``console``.
"""

from cnnbench.training.build import Training, build_training
from cnnbench.training.evaluate import evaluate_checkpoint
from cnnbench.training.run import train_run

__all__ = ["Training", "build_training", "evaluate_checkpoint", "train_run"]
