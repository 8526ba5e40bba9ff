"""Every check of a :class:`~cnnbench.config.TrainConfig`'s values, in one place: choices,
ranges and combinations of options. Names that live elsewhere (models, datasets, recipes,
augmentations) are checked when a config is resolved (:mod:`cnnbench.config.resolve`)."""

from __future__ import annotations

import dataclasses
import math

from cnnbench.config.values import parse_batch_schedule
from cnnbench.errors import UserError


def validate(c) -> None:
    """Every range and combination of a :class:`~cnnbench.config.TrainConfig`, checked once."""
    def need(ok: bool, msg: str):
        if not ok:
            raise UserError(msg)

    for f in dataclasses.fields(c):
        choices = f.metadata.get("choices")
        value = getattr(c, f.name)
        if choices and value not in choices:
            raise UserError(f"unknown {f.name} {value!r}; choose one of {', '.join(choices)}")
    for key in ("lr", "momentum", "weight_decay", "dropout", "label_smoothing", "val_split",
                "warmup_epochs", "gamma", "final_lr_frac", "ema", "grad_clip", "bn_lr_scale"):
        value = getattr(c, key)
        need(math.isfinite(value), f"option {key!r} must be a finite number, got {value}")
    need(c.track in (None, "mlflow") or str(c.track).startswith("mlflow:"),
         f"unknown tracker {c.track!r}; give --track mlflow or --track mlflow:URI")
    need(c.model != "", "model must be a model name (`cnnbench models` lists them)")
    need(c.dataset != "", "dataset must be a dataset name (`cnnbench datasets` lists them)")
    need(c.epochs >= 1, f"epochs must be >= 1, got {c.epochs}")
    need(c.batch_size >= 1, f"batch size must be >= 1, got {c.batch_size}")
    need(c.eval_batch_size is None or c.eval_batch_size >= 1,
         f"eval batch size must be >= 1, got {c.eval_batch_size}")
    if c.batch_schedule is not None:
        parse_batch_schedule(c.batch_schedule)
    need(c.lr > 0, f"learning rate must be > 0, got {c.lr}")
    need(0 <= c.momentum < 1, f"momentum must be in [0, 1), got {c.momentum}")
    need(not c.nesterov or (c.optimizer == "sgd" and c.momentum > 0),
         f"nesterov needs optimizer sgd with momentum > 0, got optimizer {c.optimizer} with momentum "
         f"{c.momentum}; add --no-nesterov (a recipe may have set it)"
         + ("; muon's SGD part is Nesterov anyway" if c.optimizer == "muon" else ""))
    need(c.weight_decay >= 0, f"weight decay must be >= 0, got {c.weight_decay}")
    need(c.bn_lr_scale > 0, f"bn_lr_scale must be > 0, got {c.bn_lr_scale}")
    need(c.muon_lr > 0, f"muon_lr must be > 0, got {c.muon_lr}")
    need(0 <= c.muon_momentum < 1, f"muon_momentum must be in [0, 1), got {c.muon_momentum}")
    need(not c.muon_normalize or c.optimizer == "muon",
         f"muon_normalize needs optimizer muon, got optimizer {c.optimizer}; add --optimizer "
         f"muon or drop --muon-normalize")
    need(1 <= c.muon_ns_steps <= 20, f"muon_ns_steps must be in [1, 20], got {c.muon_ns_steps}")
    need(c.muon_ns_steps == 5 or c.optimizer == "muon",
         f"muon_ns_steps needs optimizer muon, got optimizer {c.optimizer}; add --optimizer muon "
         f"or drop --muon-ns-steps")
    need(0 <= c.dropout < 1, f"dropout must be in [0, 1), got {c.dropout}")
    need(0 <= c.label_smoothing < 1, f"label smoothing must be in [0, 1), got {c.label_smoothing}")
    need(c.grad_clip >= 0, f"grad clip must be >= 0 (0 = off), got {c.grad_clip}")
    need(0 <= c.val_split < 1, f"val split must be in [0, 1), got {c.val_split}")
    need(0 <= c.warmup_epochs < c.epochs,
         f"warmup epochs must be >= 0 and shorter than the run ({c.epochs} epochs), got "
         f"{c.warmup_epochs}: lower --warmup-epochs or raise --epochs")
    need(not (c.scheduler == "plateau" and c.warmup_epochs > 0),
         "scheduler plateau takes no warmup; set warmup_epochs 0 or use another scheduler")
    need(c.step_size >= 1, f"step size must be >= 1 epoch, got {c.step_size}")
    need(c.gamma > 0, f"gamma must be > 0, got {c.gamma}")
    need(all(m >= 1 for m in c.milestones) and list(c.milestones) == sorted(set(c.milestones)),
         f"milestones must be increasing epochs >= 1, got {c.milestones}")
    need(c.scheduler != "multistep" or len(c.milestones) > 0,
         "scheduler multistep needs --milestones, e.g. --milestones 20,40")
    need(0 <= c.final_lr_frac <= 1, f"final_lr_frac must be in [0, 1], got {c.final_lr_frac}")
    need(c.plateau_patience >= 0, f"plateau patience must be >= 0, got {c.plateau_patience}")
    need(c.early_stop >= 0, f"early stop must be >= 0 (0 = off), got {c.early_stop}")
    need(0 <= c.ema < 1, f"ema must be in [0, 1) (0 = off), got {c.ema}")
    need(c.ema_every >= 1, f"ema_every must be >= 1, got {c.ema_every}")
    need(c.resize is None or c.resize >= 1, f"resize must be >= 1 pixel, got {c.resize}")
    need(c.whiten_bias_epochs >= -1, f"whiten_bias_epochs must be >= 0 (or -1 = off), got "
                                     f"{c.whiten_bias_epochs}")
    need(c.whiten_bias_epochs < 0 or c.whiten_init,
         "whiten_bias_epochs needs whiten_init (it freezes the whitening filters); add "
         "--whiten-init or drop --whiten-bias-epochs")
    need(c.lowres_size is None or c.lowres_size >= 1,
         f"lowres_size must be >= 1 pixel, got {c.lowres_size}")
    need(0 <= c.lowres_epochs < c.epochs,
         f"lowres_epochs must be in [0, epochs={c.epochs}) (the last epochs train at the full "
         f"size), got {c.lowres_epochs}")
    need((c.lowres_size is None) == (c.lowres_epochs == 0),
         "progressive resizing needs both --lowres-size PX and --lowres-epochs N (or neither)")
    for key in ("limit_train", "limit_eval"):
        value = getattr(c, key)
        need(value is None or value >= 1, f"{key} must be >= 1 image (or left out), got {value}")
    need(c.num_threads >= 0, f"num_threads must be >= 0 (0 = default), got {c.num_threads}")
    need(c.log_every >= 1, f"log_every must be >= 1 step, got {c.log_every}")
    for key in ("mean", "std"):
        value = getattr(c, key)
        need(value is None or len(value) >= 1, f"{key} must list one value per channel")
    need(c.std is None or all(s > 0 for s in c.std), f"std values must be > 0, got {c.std}")
    need(c.seed >= 0 and c.split_seed >= 0, "seeds must be >= 0")
    _check_fine_tuning(c)


def _check_fine_tuning(c) -> None:
    """``init`` and ``pretrained`` exclude each other; ``unfreeze_at`` needs ``freeze`` and lies
    inside the run; the head and backbone learning rates are finite and > 0."""
    if c.init and c.pretrained:
        raise UserError("give --init PATH or --pretrained, not both")
    if c.unfreeze_at is not None:
        if (c.freeze or "none") == "none":
            raise UserError("--unfreeze-at needs --freeze (e.g. --freeze backbone)")
        if c.unfreeze_at < 1 or c.unfreeze_at >= c.epochs:
            raise UserError(f"unfreeze_at must be between 1 and epochs - 1 ({c.epochs}), got "
                            f"{c.unfreeze_at}: the number of epochs trained frozen")
    for key in ("head_lr", "backbone_lr"):
        value = getattr(c, key)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"{key} must be a finite number > 0, got {value}")
