"""Every option of a training run, in one frozen dataclass: :class:`TrainConfig`.

:class:`TrainConfig` holds every ``cnnbench train`` option. The same names are the keys of a
YAML ``--config`` file, of a study's per-run options and of the run's ``config.yaml``; each
field's flag is its name with ``-`` (``--batch-size``), and the underscore spelling works too
(``--batch_size``). Aliases, the lab reports' spellings: ``epoch`` = ``epochs``, ``reg`` =
``weight_decay``.

The dataclass defaults are plain and neutral (AdamW at a constant 1e-3, no weight decay, no
label smoothing, no augmentation), what the lab reports' runs assume for anything they do not
name. Building a config coerces every value to its field's type (:mod:`.values`) and checks
every range and combination once (:mod:`.checks`): a mistake is a one-line
:class:`~cnnbench.errors.UserError`. Names of models, datasets, recipes and augmentations are
resolved by :mod:`cnnbench.config.resolve`, which also layers defaults < recipe < file < flags.
What the optimizer and schedule options do is documented in :mod:`cnnbench.training.optim`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from cnnbench.config.checks import validate
from cnnbench.config.values import coerce, parse_batch_schedule, plain
from cnnbench.errors import UserError, did_you_mean

OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw", "rmsprop", "muon")
SCHEDULERS = ("none", "step", "multistep", "cosine", "linear", "onecycle", "plateau")
DEVICES = ("auto", "cpu", "cuda")
DIST_BACKENDS = ("auto", "nccl", "gloo")
AMP_MODES = ("off", "auto", "bf16", "fp16")
STEMS = ("auto", "small", "imagenet")
TTA_MODES = ("none", "mirror", "translate", "mirror_translate")
HEAD_CHOICES = ("auto", "keep", "reset")
TEST_WEIGHTS = ("best", "last")

# The lab reports' spellings -> field names (also accepted as flags and in config files).
ALIASES = {"epoch": "epochs", "reg": "weight_decay"}


# What an option is to a comparison: the one home of "is it part of the recipe?", read by
# resuming (which options may change), the report's departures from a lab report's recipe and
# its grouping of the seeds of one run. Every field names its role (a test checks it).
ROLES = {
    "recipe": "decides what is trained: a difference is a different recipe; fixed on resume",
    "start": "the weights a run starts from (init): recipe, but each seed may start from its own",
    "seed": "the seed: differs between the seeds of one run; fixed on resume",
    "record": "where and how the run is recorded (run directory, name, data root, log "
              "interval, profile): not recipe; free on resume; differs between seeds",
    "machine": "where it is computed (device, threads, compile, process-group backend): not "
               "recipe; free on resume",
    "exactness": "changes results only in the last bits or adds logs (determinism, memory "
                 "format, evaluation batch, per-epoch test): not recipe; fixed on resume",
}


def _opt(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
         role: str, metavar: str | None = None, group: str = "training"):
    """A dataclass field with its CLI help, valid choices, help-group name and its
    :data:`ROLES` role (required: a new option must say whether it is part of the recipe)."""
    kw = {"default_factory": default} if callable(default) else {"default": default}
    return field(**kw, metadata={"help": help, "choices": choices, "metavar": metavar,
                                 "group": group, "role": role})


@dataclass(frozen=True)
class TrainConfig:
    """Every option of one training run (see the module docstring for precedence)."""

    # --- what to train
    model: str = _opt("lenet5", "model name (case-insensitive; `cnnbench models` lists them)",
                      group="model and data", role="recipe")
    dataset: str = _opt("mnist", "dataset name: {datasets} or imagefolder:PATH (`cnnbench "
                        "datasets` says which are found)", group="model and data", role="recipe")
    model_kwargs: dict = _opt(dict,
                              "keyword arguments of the model builder, as a YAML mapping, e.g. "
                              "\"{activation: relu, pool: max}\"; they belong to the model they "
                              "are given with: changing the model in a higher layer (recipe < "
                              "file < flags) without them resets them to {}", metavar="YAML",
                              group="model and data", role="recipe")
    stem: str = _opt("auto", "stem of ResNet/VGG/MobileNet/GoogLeNet: auto (imagenet for inputs "
                     ">= 112 px), small or imagenet", choices=STEMS, group="model and data", role="recipe")
    dropout: float = _opt(0.0, "dropout rate of the model's classifier (0 = none)",
                          group="model and data", role="recipe")
    init: str | None = _opt(None, "start from these weights: a cnnbench checkpoint, a run "
                            "directory (its best.ckpt) or a state_dict file such as torchvision's "
                            "resnet18-*.pth; tensors are matched by name and shape (README: "
                            "Fine-tuning): the classifier is replaced when the classes differ, "
                            "RGB first-conv kernels are summed for 1-channel data, stem tensors of "
                            "another shape start fresh", metavar="PATH", group="fine-tuning", role="start")
    pretrained: bool = _opt(False, "start from torchvision's ImageNet weights for --model (from "
                            "the torch hub cache, downloaded there when a network is reachable)",
                            group="fine-tuning", role="recipe")
    init_head: str = _opt("auto", "classifier head with --init/--pretrained: auto (fresh when "
                          "the class count, or a cnnbench checkpoint's dataset, differs), keep, "
                          "reset", choices=HEAD_CHOICES, group="fine-tuning", role="recipe")
    freeze: str = _opt("none", "freeze part of the model: backbone (all but the classifier "
                       "head, BatchNorm statistics included), none, or module names "
                       "(conv1,bn1,layer1)", metavar="WHAT", group="fine-tuning", role="recipe")
    unfreeze_at: int | None = _opt(None, "with --freeze: train frozen for this many epochs, "
                                   "then unfreeze everything", metavar="EPOCH",
                                   group="fine-tuning", role="recipe")
    head_lr: float | None = _opt(None, "peak learning rate of the classifier head (default: "
                                 "--lr)", metavar="LR", group="fine-tuning", role="recipe")
    backbone_lr: float | None = _opt(None, "peak learning rate of everything but the head "
                                     "(default: --lr)", metavar="LR", group="fine-tuning", role="recipe")
    data_dir: str | None = _opt(None, "data root (default: $CNNBENCH_DATA, else ./data then shared/datasets beside the checkout)",
                                metavar="DIR", group="model and data", role="record")
    val_split: float = _opt(0.1, "fraction of the training set held out for validation (0 = "
                            "none: the final weights are tested)", group="model and data", role="recipe")
    split_seed: int = _opt(0, "seed of the train/validation split (kept fixed across --seed)",
                           group="model and data", role="recipe")
    augment: str = _opt("none", "training augmentation, '+'-joined: none, crop, flip, altflip, "
                        "translate, cutout", group="model and data", role="recipe")
    resize: int | None = _opt(None, "resize images to N x N pixels (bilinear) before the model",
                              metavar="N", group="model and data", role="recipe")
    mean: list[float] | None = _opt(None, "per-channel normalisation mean (default: the "
                                    "dataset's)", metavar="M1,M2,..", group="model and data", role="recipe")
    std: list[float] | None = _opt(None, "per-channel normalisation std (default: the dataset's)",
                                   metavar="S1,S2,..", group="model and data", role="recipe")
    limit_train: int | None = _opt(None, "use only N training images, a seeded random subset (smoke runs; "
                                   "the summary records it)", metavar="N", group="model and data", role="recipe")
    limit_eval: int | None = _opt(None, "use only N validation and N test images (seeded random subsets)",
                                  metavar="N", group="model and data", role="recipe")

    # --- how long, how big
    epochs: int = _opt(10, "number of epochs (with --batch-schedule: its total)", role="recipe")
    batch_size: int = _opt(128, "training batch size", role="recipe")
    batch_schedule: str | None = _opt(None, "staged batch sizes, SIZE:EPOCHS,... e.g. "
                                      "32:20,128:20,256:10", metavar="SCHEDULE", role="recipe")
    eval_batch_size: int | None = _opt(None, "evaluation batch size (default: max(batch size, "
                                       "256))", role="exactness")

    # --- optimizer
    optimizer: str = _opt("adamw", "optimizer (what weight decay means for each: cnnbench.training.optim)",
                          choices=OPTIMIZERS, group="optimizer", role="recipe")
    lr: float = _opt(1e-3, "peak learning rate", group="optimizer", role="recipe")
    momentum: float = _opt(0.9, "momentum of sgd (ignored by the other optimizers)",
                           group="optimizer", role="recipe")
    nesterov: bool = _opt(False, "Nesterov momentum (sgd only)", group="optimizer", role="recipe")
    muon_lr: float = _opt(0.02, "muon: peak learning rate of the convolution filters and hidden "
                          "linear weights (the rest, head included, take Nesterov SGD at --lr "
                          "with --momentum)", group="optimizer", role="recipe")
    muon_momentum: float = _opt(0.95, "muon: momentum of the orthogonalised updates",
                                group="optimizer", role="recipe")
    muon_normalize: bool = _opt(False, "muon: before every step, rescale each filter bank (and "
                                "hidden linear weight) to a norm of sqrt(its output channels), as "
                                "airbench94_muon: --muon-lr is then the step's size relative to the "
                                "weights, and weight decay no longer shrinks them",
                                group="optimizer", role="recipe")
    muon_ns_steps: int = _opt(5, "muon: Newton-Schulz iterations per update (airbench94_muon: 3, "
                              "cheaper; the singular values then land in a wider band around 1)",
                              group="optimizer", role="recipe")
    weight_decay: float = _opt(0.0, "weight decay (alias --reg): coupled L2 for sgd/adam/"
                               "adagrad/rmsprop, decoupled for adamw", group="optimizer", role="recipe")
    decouple_wd: bool = _opt(False, "give weight decay independently of the learning rate "
                             "(group weight decay = weight_decay / group lr)", group="optimizer", role="recipe")
    no_decay_bn_bias: bool = _opt(False, "exempt normalisation-layer parameters and all biases "
                                  "from weight decay", group="optimizer", role="recipe")
    bn_lr_scale: float = _opt(1.0, "learning-rate multiplier for normalisation-layer "
                              "(BatchNorm) parameters", group="optimizer", role="recipe")
    label_smoothing: float = _opt(0.0, "label smoothing of the training loss", group="optimizer", role="recipe")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this value (0 = off)",
                            group="optimizer", role="recipe")

    # --- schedule
    scheduler: str = _opt("none", "learning-rate schedule, stepped per optimizer step",
                          choices=SCHEDULERS, group="schedule", role="recipe")
    warmup_epochs: float = _opt(0.0, "linear warmup length in epochs (may be fractional)",
                                group="schedule", role="recipe")
    step_size: int = _opt(30, "scheduler step: decay every N epochs", group="schedule", role="recipe")
    gamma: float = _opt(0.1, "decay factor of step/multistep/plateau", group="schedule", role="recipe")
    milestones: list[int] = _opt(list, "scheduler multistep: epochs at which to decay",
                                 metavar="E1,E2,..", group="schedule", role="recipe")
    final_lr_frac: float = _opt(0.0, "cosine/linear/onecycle: final lr as a fraction of lr",
                                group="schedule", role="recipe")
    plateau_patience: int = _opt(3, "scheduler plateau: epochs without improvement before decay",
                                 group="schedule", role="recipe")
    early_stop: int = _opt(0, "stop after N epochs without a better validation accuracy (0 = "
                           "off)", metavar="N", group="schedule", role="recipe")
    test_weights: str = _opt("best", "the weights tested once after training: best (the best "
                             "validation epoch's; the final weights without a validation split) "
                             "or last (the final epoch's, as a report that tested after its "
                             "last epoch did; the best validation epoch's test accuracy is then "
                             "recorded beside it)", choices=TEST_WEIGHTS, group="schedule", role="recipe")
    monitor_test: bool = _opt(False, "also evaluate the test set after every epoch, for the "
                              "curves and a report's own 'best test accuracy over epochs' "
                              "(logged as epoch_test_acc; never used to select weights)",
                              group="schedule", role="exactness")

    # --- fast-training techniques (docs/techniques.md)
    ema: float = _opt(0.0, "decay per step of the weight average used for evaluation and "
                      "checkpoints (0 = off)", group="techniques", role="recipe")
    ema_every: int = _opt(1, "update the weight average every N steps", metavar="N",
                          group="techniques", role="recipe")
    whiten_init: bool = _opt(False, "initialise the first convolution by patch whitening of "
                             "training images", group="techniques", role="recipe")
    whiten_bias_epochs: int = _opt(-1, "with whiten_init: keep the whitening filters frozen and "
                                   "train their bias for the first N epochs only (airbench: 3; "
                                   "-1 = the whitening layer trains like any other)", metavar="N",
                                   group="techniques", role="recipe")
    lowres_size: int | None = _opt(None, "progressive resizing: train the first lowres_epochs "
                                   "epochs on images downscaled to this many pixels",
                                   metavar="PX", group="techniques", role="recipe")
    lowres_epochs: int = _opt(0, "progressive resizing: epochs trained at lowres_size",
                              metavar="N", group="techniques", role="recipe")
    tta: str = _opt("none", "test-time augmentation of evaluation", choices=TTA_MODES,
                    group="techniques", role="recipe")

    # --- machine and reproducibility
    seed: int = _opt(0, "seed of initialisation, shuffling, augmentation and dropout",
                     group="machine", role="seed")
    deterministic: bool = _opt(False, "deterministic algorithms (exact resume on CPU)",
                               group="machine", role="exactness")
    device: str = _opt("auto", "device (auto = cuda if available)", choices=DEVICES,
                       group="machine", role="machine")
    amp: str = _opt("off", "mixed precision: bf16 or fp16 autocast (fp16 with loss scaling); "
                    "auto = bf16 where the device computes it natively and it pays (CUDA "
                    "from Ampere on; CPUs with AVX512-BF16 or AMX where it was measured to "
                    "train faster), else off",
                    choices=AMP_MODES, group="machine", role="recipe")
    channels_last: bool = _opt(False, "channels-last memory format", group="machine", role="exactness")
    compile: bool = _opt(False, "torch.compile the model", group="machine", role="machine")
    num_threads: int = _opt(0, "CPU threads (0 = PyTorch's default, one per core, or fewer when "
                            "other processes already keep cores busy at the start: said in one "
                            "line; under torchrun, one per process unless OMP_NUM_THREADS says "
                            "otherwise)",
                            group="machine", role="machine")
    dist_backend: str = _opt("auto", "under torchrun: the process group's backend (auto = nccl "
                             "on GPUs, gloo on CPUs)", choices=DIST_BACKENDS, group="machine", role="machine")
    sync_bn: bool = _opt(False, "under torchrun on GPUs: BatchNorm over the global batch "
                         "(SyncBatchNorm); without it each process's running statistics are "
                         "averaged after every epoch", group="machine", role="recipe")

    # --- bookkeeping
    out: str | None = _opt(None, "run directory (default runs/<model>-<dataset>-<time>)",
                           metavar="DIR", group="output", role="record")
    log_every: int = _opt(50, "log the training loss every N steps", metavar="N",
                          group="output", role="record")
    recipe: str | None = _opt(None, "named set of defaults (`cnnbench recipes`)",
                              metavar="NAME", group="output", role="recipe")
    name: str | None = _opt(None, "run name recorded in the summary (default: the directory "
                            "name)", group="output", role="record")
    profile: str | None = _opt(None, "study profile that produced this run (recorded only)",
                               group="output", role="record")
    track: str | None = _opt(None, "also log the run to MLflow: mlflow (the tracking URI of "
                             "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here) or "
                             "mlflow:URI; needs pip install 'cnnbench[mlflow]'",
                             metavar="mlflow[:URI]", group="output", role="record")

    def __post_init__(self):
        hints = _type_hints()
        for f in dataclasses.fields(self):
            value = coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        if self.batch_schedule is not None:  # the schedule fixes the number of epochs
            object.__setattr__(self, "epochs", sum(e for _, e in self.stages()))
        validate(self)

    # --- API
    def to_dict(self) -> dict:
        """Plain, YAML/JSON-able dict of every field (lists, not tuples)."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """A config from a complete or partial dict; unknown keys raise :class:`UserError`."""
        return cls(**normalize_keys(values, source))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (validated again). Changing the model (by its
        canonical name) without giving ``model_kwargs`` resets them: they belong to the model
        they came with."""
        changes = normalize_keys(changes, "replace()")
        if "model" in changes and "model_kwargs" not in changes and changes["model"] != self.model:
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
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _with_role(*roles: str) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(TrainConfig)
                     if f.metadata.get("role") in roles)


# Derived from the roles, never typed again: options that are not the recipe (a run differing
# only in them trains the same thing), options ``--resume`` lets change, and options that may
# differ between the seeds of one run (the report groups runs that agree on all others).
NOT_RECIPE = _with_role("seed", "record", "machine", "exactness")
RESUMABLE_CHANGES = _with_role("record", "machine")
PER_SEED = _with_role("seed", "start", "record")


def field_info() -> list[dataclasses.Field]:
    """The dataclass fields (with ``metadata``: help, choices, metavar, group) for the CLI."""
    return list(dataclasses.fields(TrainConfig))


def _type_hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(TrainConfig)
    return _HINTS


_HINTS: dict[str, Any] | None = None


def normalize_keys(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Keys as field names: ``-`` -> ``_``, aliases resolved; unknown keys -> UserError."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a mapping of option: value, got {type(values).__name__}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).strip().replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in FIELDS:
            close = did_you_mean(name, FIELDS)
            hint = (f"did you mean {close!r}?" if close else
                    "`cnnbench train --help` lists the options")
            raise UserError(f"{source}: unknown option {key!r}; {hint}")
        if name in out:
            raise UserError(f"{source}: option {name!r} is given twice (once as an alias)")
        out[name] = value
    return out


def dump_yaml(config: TrainConfig) -> str:
    """The fully resolved config as YAML (the run's ``config.yaml``)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
