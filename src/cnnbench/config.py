"""Every option of a training run, in one frozen dataclass, and how it is resolved.

:class:`TrainConfig` holds every ``cnnbench train`` option. The same names are the keys of a
YAML ``--config`` file, of a study's per-run options and of the run's ``config.yaml``; each
field's flag is its name with ``-`` (``--batch-size``), and the underscore spelling works too
(``--batch_size``).

Precedence, lowest first (:func:`resolve_config`)::

    dataclass default  <  recipe (--recipe NAME)  <  config file (--config FILE)  <  flags

The dataclass defaults are plain and neutral (AdamW at a constant 1e-3, no weight decay, no
label smoothing, no augmentation), what the lab reports' runs assume for anything they do
not name; a study run or ``resolve_config`` gets exactly them unless it names a recipe.
``cnnbench train`` applies the ``default`` recipe when neither the flags nor the config file
name one (``--recipe none``: the plain defaults): the tuned no-flag run, LeNet-5 on MNIST on
the CPU (``cnnbench recipes default``).

An unknown key, a value of the wrong type or out of range ends in :class:`UserError` (one
line, exit 2) naming the key and what is valid. Aliases, the lab reports' spellings:
``epoch`` = ``epochs``, ``reg`` = ``weight_decay``; model names are case-insensitive and the
reports' family names map to a default variant (``ResNet`` -> ``resnet18``), via
:func:`cnnbench.models.resolve_model_name`.

What weight decay means (``weight_decay``, alias ``reg``)
--------------------------------------------------------
* ``sgd``, ``adam``, ``adagrad``, ``rmsprop``: *coupled* L2 regularisation, PyTorch's
  ``weight_decay``: ``weight_decay * w`` is added to the gradient before the optimizer's
  update, so it goes through momentum and Adam's/AdaGrad's/RMSprop's per-parameter scaling
  (for the adaptive optimizers this is weaker than true weight decay on weights with large
  gradients).
* ``adamw``: *decoupled* weight decay (Loshchilov & Hutter): each step multiplies the weights by
  ``1 - lr_t * weight_decay``, outside the adaptive update.
* Which parameters: all of them by default, BatchNorm weights/biases and every bias included
  (PyTorch's behaviour, which the lab reports used). ``no_decay_bn_bias: true`` exempts
  normalisation-layer parameters (BatchNorm, GroupNorm, LayerNorm) and all biases.
* ``decouple_wd: true`` makes the decay independent of the learning rate, for every
  optimizer: each parameter group's PyTorch ``weight_decay`` becomes ``weight_decay / lr_group``
  (``lr_group`` = that group's peak learning rate), so at peak learning rate the step shrinks
  the weights by ``weight_decay`` (coupled through momentum for SGD, as in airbench), and the
  shrinkage follows the schedule. Changing ``lr`` or ``bn_lr_scale`` then leaves the decay
  alone (K. Jordan's airbench, arXiv 2404.00498, expresses its SGD hyperparameters this way).

Learning-rate schedules (``scheduler``), all stepped per optimizer step
-----------------------------------------------------------------------
``none`` (constant), ``step`` (x ``gamma`` every ``step_size`` epochs), ``multistep`` (x
``gamma`` at each epoch in ``milestones``), ``cosine`` and ``linear`` (decay from ``lr`` to
``lr * final_lr_frac`` over the run), ``onecycle`` (warm up from ``lr / 25`` to ``lr`` over
``warmup_epochs``, or the first quarter of the run if that is 0, then cosine decay to
``lr * final_lr_frac``), ``plateau`` (x ``gamma`` when the validation loss has not improved for
``plateau_patience`` epochs; stepped per epoch; no warmup). ``warmup_epochs`` (may be
fractional) adds a linear warmup from ~0 to ``lr`` in front of every other schedule.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.errors import UserError

OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "multistep", "cosine", "linear", "onecycle", "plateau")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("off", "bf16", "fp16")
STEMS = ("auto", "small", "imagenet")
TTA_MODES = ("none", "mirror", "mirror_translate")

# The lab reports' spellings -> field names (also accepted as flags and in config files).
ALIASES = {"epoch": "epochs", "reg": "weight_decay"}


def _opt(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
         metavar: str | None = None, group: str = "training"):
    """A dataclass field with its CLI help, valid choices and help-group name."""
    kw = {"default_factory": default} if callable(default) else {"default": default}
    return field(**kw, metadata={"help": help, "choices": choices, "metavar": metavar, "group": group})


@dataclass(frozen=True)
class TrainConfig:
    """Every option of one training run (see the module docstring for precedence)."""

    # --- what to train
    model: str = _opt("lenet5", "model name (case-insensitive; `cnnbench models` lists them)",
                      group="model and data")
    dataset: str = _opt("mnist", "dataset name: mnist, fashion_mnist, cifar10, cifar100, "
                        "cifar10_jpeg or imagefolder:PATH", group="model and data")
    model_kwargs: dict = _opt(dict,
                              "keyword arguments of the model builder, as a YAML mapping, e.g. "
                              "\"{activation: relu, pool: max}\"; they belong to the model they "
                              "are given with: changing the model in a higher layer (recipe < "
                              "file < flags) without them resets them to {}", metavar="YAML",
                              group="model and data")
    stem: str = _opt("auto", "stem of ResNet/VGG/MobileNet/GoogLeNet: auto (imagenet for inputs "
                     ">= 112 px), small or imagenet", choices=STEMS, group="model and data")
    dropout: float = _opt(0.0, "dropout rate of the model's classifier (0 = none)",
                          group="model and data")
    init: str | None = _opt(None, "start from these weights: a cnnbench checkpoint, a run "
                            "directory (its best.ckpt) or a state_dict file such as torchvision's "
                            "resnet18-*.pth; tensors are matched by name and shape (README: "
                            "Fine-tuning): the classifier is replaced when the classes differ, "
                            "RGB first-conv kernels are summed for 1-channel data, stem tensors of "
                            "another shape start fresh", metavar="PATH", group="fine-tuning")
    pretrained: bool = _opt(False, "start from torchvision's ImageNet weights for --model (from "
                            "the torch hub cache, downloaded there when a network is reachable)",
                            group="fine-tuning")
    init_head: str = _opt("auto", "classifier head with --init/--pretrained: auto (fresh when "
                          "the class count, or a cnnbench checkpoint's dataset, differs), keep, "
                          "reset", choices=("auto", "keep", "reset"), group="fine-tuning")
    freeze: str = _opt("none", "freeze part of the model: backbone (all but the classifier "
                       "head, BatchNorm statistics included), none, or module names "
                       "(conv1,bn1,layer1)", metavar="WHAT", group="fine-tuning")
    unfreeze_at: int | None = _opt(None, "with --freeze: train frozen for this many epochs, "
                                   "then unfreeze everything", metavar="EPOCH",
                                   group="fine-tuning")
    head_lr: float | None = _opt(None, "peak learning rate of the classifier head (default: "
                                 "--lr)", metavar="LR", group="fine-tuning")
    backbone_lr: float | None = _opt(None, "peak learning rate of everything but the head "
                                     "(default: --lr)", metavar="LR", group="fine-tuning")
    data_dir: str | None = _opt(None, "data root (default $CNNBENCH_DATA, else ./data)",
                                metavar="DIR", group="model and data")
    val_split: float = _opt(0.1, "fraction of the training set held out for validation (0 = "
                            "none: the final weights are tested)", group="model and data")
    split_seed: int = _opt(0, "seed of the train/validation split (kept fixed across --seed)",
                           group="model and data")
    augment: str = _opt("none", "training augmentation, '+'-joined: none, crop, flip, altflip, "
                        "translate, cutout", group="model and data")
    resize: int | None = _opt(None, "resize images to N x N pixels (bilinear) before the model",
                              metavar="N", group="model and data")
    mean: list[float] | None = _opt(None, "per-channel normalisation mean (default: the "
                                    "dataset's)", metavar="M1,M2,..", group="model and data")
    std: list[float] | None = _opt(None, "per-channel normalisation std (default: the dataset's)",
                                   metavar="S1,S2,..", group="model and data")
    limit_train: int | None = _opt(None, "use only N training images, a seeded random subset (smoke runs; "
                                   "the summary records it)", metavar="N", group="model and data")
    limit_eval: int | None = _opt(None, "use only N validation and N test images (seeded random subsets)",
                                  metavar="N", group="model and data")

    # --- how long, how big
    epochs: int = _opt(10, "number of epochs (with --batch-schedule: its total)")
    batch_size: int = _opt(128, "training batch size")
    batch_schedule: str | None = _opt(None, "staged batch sizes, SIZE:EPOCHS,... e.g. "
                                      "32:20,128:20,256:10", metavar="SCHEDULE")
    eval_batch_size: int | None = _opt(None, "evaluation batch size (default: max(batch size, "
                                       "256))")

    # --- optimizer
    optimizer: str = _opt("adamw", "optimizer (see the docs of weight decay in config.py)",
                          choices=OPTIMIZERS, group="optimizer")
    lr: float = _opt(1e-3, "peak learning rate", group="optimizer")
    momentum: float = _opt(0.9, "momentum of sgd (ignored by the other optimizers)",
                           group="optimizer")
    nesterov: bool = _opt(False, "Nesterov momentum (sgd only)", group="optimizer")
    weight_decay: float = _opt(0.0, "weight decay (alias --reg): coupled L2 for sgd/adam/"
                               "adagrad/rmsprop, decoupled for adamw", group="optimizer")
    decouple_wd: bool = _opt(False, "give weight decay independently of the learning rate "
                             "(group weight decay = weight_decay / group lr)", group="optimizer")
    no_decay_bn_bias: bool = _opt(False, "exempt normalisation-layer parameters and all biases "
                                  "from weight decay", group="optimizer")
    bn_lr_scale: float = _opt(1.0, "learning-rate multiplier for normalisation-layer "
                              "(BatchNorm) parameters", group="optimizer")
    label_smoothing: float = _opt(0.0, "label smoothing of the training loss", group="optimizer")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this value (0 = off)",
                            group="optimizer")

    # --- schedule
    scheduler: str = _opt("none", "learning-rate schedule, stepped per optimizer step",
                          choices=SCHEDULERS, group="schedule")
    warmup_epochs: float = _opt(0.0, "linear warmup length in epochs (may be fractional)",
                                group="schedule")
    step_size: int = _opt(30, "scheduler step: decay every N epochs", group="schedule")
    gamma: float = _opt(0.1, "decay factor of step/multistep/plateau", group="schedule")
    milestones: list[int] = _opt(list, "scheduler multistep: epochs at which to decay",
                                 metavar="E1,E2,..", group="schedule")
    final_lr_frac: float = _opt(0.0, "cosine/linear/onecycle: final lr as a fraction of lr",
                                group="schedule")
    plateau_patience: int = _opt(3, "scheduler plateau: epochs without improvement before decay",
                                 group="schedule")
    early_stop: int = _opt(0, "stop after N epochs without a better validation accuracy (0 = "
                           "off)", metavar="N", group="schedule")

    # --- fast-training techniques (docs/techniques.md)
    ema: float = _opt(0.0, "decay per step of the weight average used for evaluation and "
                      "checkpoints (0 = off)", group="techniques")
    ema_every: int = _opt(1, "update the weight average every N steps", metavar="N",
                          group="techniques")
    whiten_init: bool = _opt(False, "initialise the first convolution by patch whitening of "
                             "training images", group="techniques")
    whiten_bias_epochs: int = _opt(-1, "with whiten_init: keep the whitening filters frozen and "
                                   "train their bias for the first N epochs only (airbench: 3; "
                                   "-1 = the whitening layer trains like any other)", metavar="N",
                                   group="techniques")
    lowres_size: int | None = _opt(None, "progressive resizing: train the first lowres_epochs "
                                   "epochs on images downscaled to this many pixels",
                                   metavar="PX", group="techniques")
    lowres_epochs: int = _opt(0, "progressive resizing: epochs trained at lowres_size",
                              metavar="N", group="techniques")
    tta: str = _opt("none", "test-time augmentation of evaluation", choices=TTA_MODES,
                    group="techniques")

    # --- machine and reproducibility
    seed: int = _opt(0, "seed of initialisation, shuffling, augmentation and dropout",
                     group="machine")
    deterministic: bool = _opt(False, "deterministic algorithms (exact resume on CPU)",
                               group="machine")
    device: str = _opt("auto", "device (auto = cuda if available)", choices=DEVICES,
                       group="machine")
    amp: str = _opt("off", "mixed precision: bf16 or fp16 autocast (fp16 with loss scaling)",
                    choices=AMP_MODES, group="machine")
    channels_last: bool = _opt(False, "channels-last memory format", group="machine")
    compile: bool = _opt(False, "torch.compile the model", group="machine")
    num_threads: int = _opt(0, "CPU threads (0 = PyTorch's default: one per core)",
                            group="machine")

    # --- bookkeeping
    out: str | None = _opt(None, "run directory (default runs/<model>-<dataset>-<time>)",
                           metavar="DIR", group="output")
    log_every: int = _opt(50, "log the training loss every N steps", metavar="N",
                          group="output")
    recipe: str | None = _opt(None, "named set of defaults (`cnnbench recipes`)",
                              metavar="NAME", group="output")
    name: str | None = _opt(None, "run name recorded in the summary (default: the directory "
                            "name)", group="output")
    profile: str | None = _opt(None, "study profile that produced this run (recorded only)",
                               group="output")

    def __post_init__(self):
        hints = _type_hints()
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        if self.batch_schedule is not None:  # the schedule fixes the number of epochs
            object.__setattr__(self, "epochs", sum(e for _, e in self.stages()))
        _validate(self)

    # --- API
    def to_dict(self) -> dict:
        """Plain, YAML/JSON-able dict of every field (lists, not tuples)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """A config from a complete or partial dict; unknown keys raise :class:`UserError`."""
        return cls(**normalize_keys(values, source))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (validated again). Changing the model without
        giving ``model_kwargs`` resets them: they belong to the model they came with."""
        changes = normalize_keys(changes, "replace()")
        if ("model" in changes and "model_kwargs" not in changes
                and not _same_model(changes["model"], self.model)):
            changes["model_kwargs"] = {}
        return dataclasses.replace(self, **changes)

    def stages(self) -> list[tuple[int, int]]:
        """Training stages as ``(batch_size, epochs)``: the batch schedule, or one stage."""
        if self.batch_schedule is None:
            return [(self.batch_size, self.epochs)]
        return parse_batch_schedule(self.batch_schedule)

    def batch_size_at(self, epoch: int) -> int:
        """Training batch size of (0-based) ``epoch``."""
        end = 0
        for size, n in self.stages():
            end += n
            if epoch < end:
                return size
        return self.stages()[-1][0]


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def field_info() -> list[dataclasses.Field]:
    """The dataclass fields (with ``metadata``: help, choices, metavar, group) for the CLI."""
    return list(dataclasses.fields(TrainConfig))


def _type_hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(TrainConfig)
    return _HINTS


_HINTS: dict[str, Any] | None = None


# --- keys, types and values ------------------------------------------------------------------

def normalize_keys(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Keys as field names: ``-`` -> ``_``, aliases resolved; unknown keys -> UserError."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a mapping of option: value, got {type(values).__name__}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).strip().replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in FIELDS:
            import difflib
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{source}: unknown option {key!r}{hint}; valid options: "
                            f"{', '.join(FIELDS)}")
        if name in out:
            raise UserError(f"{source}: option {name!r} is given twice (once as an alias)")
        out[name] = value
    return out


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string",
            dict: "a mapping"}.get(tp, str(tp))


def _coerce(name: str, value: Any, tp) -> Any:
    """``value`` converted to type ``tp``; strings (from flags or YAML) are parsed."""
    def bad():
        return UserError(f"option {name!r} must be {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _coerce(name, value, inner)
    if origin is list:
        inner = typing.get_args(tp)[0]
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise bad()
        return [_coerce(name, v, inner) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise bad() from None
                if f.is_integer():
                    return int(f)
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())  # YAML 1.1 reads 1e-3 as a string
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value.strip()
        raise bad()
    if tp is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else {}
            except yaml.YAMLError:
                raise bad() from None
            value = {} if value is None else value
        if not isinstance(value, Mapping):
            raise bad()
        return {str(k): v for k, v in value.items()}
    raise TypeError(f"unsupported field type {tp!r} for {name}")  # programming error


def parse_batch_schedule(text: str) -> list[tuple[int, int]]:
    """``"32:20,128:20,256:10"`` -> ``[(32, 20), (128, 20), (256, 10)]``."""
    stages = []
    for part in text.replace(" ", "").split(","):
        try:
            size, epochs = (int(v) for v in part.split(":"))
        except ValueError:
            raise UserError(f"batch_schedule must look like 32:20,128:20,256:10 (batch size:"
                            f"epochs, comma-separated), got {text!r}") from None
        if size < 1 or epochs < 1:
            raise UserError(f"batch_schedule stage {part!r}: batch size and epochs must be >= 1")
        stages.append((size, epochs))
    if not stages:
        raise UserError("batch_schedule is empty; give SIZE:EPOCHS,... or leave it out")
    return stages


def _validate(c: TrainConfig) -> None:
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
         "nesterov needs optimizer sgd with momentum > 0")
    need(c.weight_decay >= 0, f"weight decay must be >= 0, got {c.weight_decay}")
    need(c.bn_lr_scale > 0, f"bn_lr_scale must be > 0, got {c.bn_lr_scale}")
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
    from cnnbench.transfer import check_options  # torch-free until called
    check_options(c)
    from cnnbench.data.augment import parse_augment  # unknown augmentation: fail before any data loads
    parse_augment(c.augment)


# --- resolution: defaults < recipe < file < flags --------------------------------------------

def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options of a YAML config file, keys normalised (values checked by the dataclass)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}; give a readable "
                        f"YAML file") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}; write it as option: "
                        f"value lines") from None
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UserError(f"config file {path} must be a mapping of option: value, got a "
                        f"{type(values).__name__}")
    return normalize_keys(values, f"config file {path}")


def resolve_config(overrides: Mapping[str, Any] | None = None, *,
                   config_file: str | Path | None = None,
                   default_recipe: str | None = None) -> TrainConfig:
    """The run's config: dataclass defaults < recipe < ``config_file`` < ``overrides``.

    ``overrides`` are the options given explicitly (flags, or a study's per-run options). The
    recipe is ``overrides['recipe']``, else the file's, else ``default_recipe`` (the CLI passes
    ``"default"``); ``"none"`` means no recipe. Model and dataset names are canonicalised.
    """
    from cnnbench.data import resolve_dataset_name
    from cnnbench.recipes import recipe_values

    flags = normalize_keys(overrides or {}, "options")
    file_values = read_config_file(config_file) if config_file is not None else {}
    recipe = flags.get("recipe", file_values.get("recipe", default_recipe))
    recipe = None if recipe in (None, "", "none") else str(recipe)
    dataset = flags.get("dataset", file_values.get("dataset"))
    if dataset is not None:
        dataset = resolve_dataset_name(_coerce("dataset", dataset, str))
    recipe_layer = recipe_values(recipe, dataset) if recipe else {}
    explicit = {**file_values, **flags}
    if "batch_schedule" in {**recipe_layer, **explicit} and "epochs" in explicit:
        schedule = {**recipe_layer, **explicit}["batch_schedule"]
        if schedule not in (None, "", "none"):
            total = sum(e for _, e in parse_batch_schedule(str(schedule)))
            if _coerce("epochs", explicit["epochs"], int) != total:
                raise UserError(f"epochs {explicit['epochs']} disagrees with batch_schedule "
                                f"{schedule!r} ({total} epochs); leave epochs out")
    merged: dict[str, Any] = {}
    model = _FIELD_DEFAULTS["model"]
    for layer in (recipe_layer, file_values, flags):
        if "model" in layer and "model_kwargs" not in layer and not _same_model(layer["model"], model):
            merged["model_kwargs"] = {}  # model_kwargs belong to the model they came with
        merged.update(layer)
        model = merged.get("model", model)
    merged["recipe"] = recipe
    config = TrainConfig(**merged)
    return canonicalize(config)


def _same_model(a: Any, b: Any) -> bool:
    from cnnbench.models import resolve_model_name

    try:
        return resolve_model_name(str(a).strip()) == resolve_model_name(str(b).strip())
    except UserError:
        return False


def canonicalize(config: TrainConfig) -> TrainConfig:
    """Model and dataset names checked and canonicalised (``LeNet`` -> ``lenet5``,
    ``MNIST`` -> ``mnist``): an unknown name fails here, before a run directory exists."""
    from cnnbench.data import resolve_dataset_name
    from cnnbench.models import resolve_model_name

    model, dataset = resolve_model_name(config.model), resolve_dataset_name(config.dataset)
    if (model, dataset) == (config.model, config.dataset):
        return config
    return dataclasses.replace(config, model=model, dataset=dataset)


def load_config(path: str | Path, **overrides) -> TrainConfig:
    """A resolved config from a YAML file (its recipe applied), plus ``overrides``."""
    return resolve_config(overrides, config_file=path)


def config_from_args(args) -> TrainConfig:
    """The config from parsed ``cnnbench train`` arguments: only the flags actually given
    (parsed with ``argparse.SUPPRESS`` defaults) override the file and the recipe, which is
    ``default`` unless the flags or the file name one."""
    given = {k: v for k, v in vars(args).items() if k in FIELDS}
    return resolve_config(given, config_file=getattr(args, "config", None),
                          default_recipe="default")


def dump_yaml(config: TrainConfig) -> str:
    """The fully resolved config as YAML (the run's ``config.yaml``)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
