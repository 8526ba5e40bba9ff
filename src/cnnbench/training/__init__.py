"""Training: one run from a config to a run directory.

Read ``loop`` first (:func:`train_run`: the run, its epochs and steps, top to bottom). It calls
``setup`` (:func:`build_training`: data, model, loaders, optimizer, schedule, techniques, in one
:class:`Training`), ``record`` (the run directory, logs, TensorBoard, checkpoints, summary) and
``evaluation`` (:func:`evaluate`, :func:`evaluate_checkpoint`). The pieces: ``rundir`` (the run
directory's files and the resume decision), ``inputs`` (splits, limits, loaders), ``optim``
(optimizers, parameter groups, schedules), ``checkpoint`` (files and the one way to open a
trained model), ``ema``, ``whitening``, ``tta``, ``transfer`` (``--init``, ``--pretrained``,
freezing), ``distributed``, ``machine`` (seeds, provenance) and ``console``.
"""

from cnnbench.training.evaluation import evaluate_checkpoint
from cnnbench.training.loop import train_run
from cnnbench.training.setup import Training, build_training

__all__ = ["Training", "build_training", "evaluate_checkpoint", "train_run"]
