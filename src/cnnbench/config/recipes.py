"""Named, documented sets of ``train`` defaults (``--recipe NAME``; ``cnnbench recipes``).

A recipe is a layer of defaults between the dataclass defaults and the config file / flags
(see :mod:`cnnbench.config.resolve`): anything it sets can still be overridden. A recipe has values
for every dataset (``defaults``) and, optionally, values per dataset (``per_dataset``, keyed
by dataset name; ``imagefolder:PATH`` matches the key ``imagefolder``) and, on top of those,
values per device type and dataset (``per_device``: ``{"cuda": {"cifar10": {...}}}``; the
device is the run's ``--device``, ``auto`` meaning cuda when a GPU is visible). A recipe with
per-dataset values refuses a dataset it has none for, rather than guessing. The resolved
values end up in the run's ``config.yaml``.

To add a recipe: ``register_recipe(Recipe(...))`` in this module, with a ``doc``
saying what it is for, what it reaches, on what hardware, and where it was measured.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from cnnbench.config.options import DEFAULTS, normalize_keys
from cnnbench.data.specs import variants
from cnnbench.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A named set of defaults: ``defaults`` for every dataset, ``per_dataset`` on top."""

    name: str
    summary: str
    doc: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    per_device: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def values_for(self, dataset: str | None, device: str = "cpu") -> dict[str, Any]:
        """The defaults this recipe sets for ``dataset`` (``None``: the recipe's own dataset,
        else the dataclass default dataset) on a ``device`` type (``"cpu"``, ``"cuda"``)."""
        values = normalize_keys(self.defaults, f"recipe {self.name}")
        if not self.per_dataset:
            return values
        dataset = dataset or values.get("dataset") or DEFAULTS["dataset"]
        key = dataset.split(":", 1)[0] if dataset.startswith("imagefolder:") else dataset
        if key not in self.per_dataset:
            raise UserError(f"recipe {self.name!r} has no settings for dataset {dataset!r}; it "
                            f"covers {', '.join(self.per_dataset)}")
        values.update(normalize_keys(self.per_dataset[key], f"recipe {self.name}/{key}"))
        on_device = self.per_device.get(device, {}).get(key, {})
        return {**values, **normalize_keys(on_device, f"recipe {self.name}/{device}/{key}")}


DEFAULT = Recipe(
    name="default",
    summary="the no-flag `cnnbench train`: LeNet-5 on MNIST on the CPU, >= 99.0% test accuracy "
            "in well under a minute",
    doc=("Applied by `cnnbench train` when neither the flags nor --config name a recipe. "
         "LeNet-5 with ReLU and max-pooling (the paper's tanh and average pooling learn more "
         "slowly), 28x28 inputs padded to 32; MNIST with a 54k/6k train/validation split; "
         "AdamW, batch 128, one-cycle learning rate (warmup from lr/25 over the first quarter, "
         "then cosine decay to 0) peaking at 4e-3, label smoothing 0.1, 6 epochs; the best "
         "epoch on validation is tested. Chosen on validation accuracy (3 seeds) among 5-8 "
         "epochs, batch 64/128, lr 2e-3..6e-3, label smoothing, crop augmentation (never on the "
         "test set). Measured on this project's 2-core CPU (AMD EPYC, 2 threads, otherwise idle, "
         "torch 2.14.1): seeds 0/1/2 reached 99.27% / 99.30% / 99.22% test accuracy in "
         "31.5 / 38.4 / 30.6 s wall for the whole command (24-31 s of training). Other models "
         "and datasets take these settings too unless flags override them (changing --model "
         "drops the LeNet-specific model_kwargs). On a machine shared with other PyTorch jobs "
         "the wall time grows far more than the share of CPU lost (two 2-thread jobs on 2 cores "
         "slow each other down many times over); --num-threads 1 is then faster."),
    defaults={"model": "lenet5", "model_kwargs": {"activation": "relu", "pool": "max"},
              "dataset": "mnist", "val_split": 0.1, "epochs": 6, "batch_size": 128,
              "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "scheduler": "onecycle",
              "label_smoothing": 0.1, "augment": "none"},
)


_CIFAR = variants("cifar10")  # CIFAR-10 and the datasets registered as standing in for it

# The fast CIFAR recipe's settings, shared by `fast` and `fast-long`.
_FAST_CIFAR = {"model": "fastnet", "model_kwargs": {"widths": [64, 128, 256], "bn_scale": False},
               "val_split": 0.0, "epochs": 10, "batch_size": 256, "optimizer": "sgd",
               "momentum": 0.85, "nesterov": True, "lr": 0.375, "decouple_wd": True,
               "weight_decay": 5e-4, "bn_lr_scale": 64.0, "label_smoothing": 0.2,
               "scheduler": "linear", "warmup_epochs": 2, "final_lr_frac": 0.07,
               "augment": "altflip+translate", "whiten_init": True, "whiten_bias_epochs": 3,
               "ema": 0.99, "ema_every": 5, "tta": "mirror_translate", "channels_last": True,
               "amp": "auto"}

# On a GPU: airbench94's network and batch (Jordan 2024), the learning rate scaled linearly
# with the batch (0.375 x 4 = 1.5, airbench94's rate for a mean loss), the weight average over
# the same span in epochs: its decay is per optimizer step (horizon 1 / (1 - d) steps), and an
# epoch has 49 steps instead of 196, so 1 - d is 4x larger.
_FAST_CIFAR_CUDA = {"model_kwargs": {"widths": [64, 256, 256], "bn_scale": False},
                    "batch_size": 1024, "lr": 1.5, "ema": 0.96, "ema_every": 2}

FAST = Recipe(
    name="fast",
    summary="time-to-accuracy recipes: MNIST to 99% in seconds and CIFAR-10 to ~89.5% in "
            "minutes on a 2-core CPU; settings per device (cpu, cuda)",
    doc=("Time-to-accuracy recipes. They train on all training images (val_split 0: no "
         "model selection, the final weights are tested once); every choice below was made on "
         "a validation split, never on the test set. Settings depend on the device the run "
         "uses (--device, auto = cuda when a GPU is visible); any flag overrides them.\n\n"
         "mnist (every device): LeNet-5 with ReLU and max-pooling whose C1 convolves with stride "
         "2 in place of S2's pooling, with 32 C3 maps and no padding to 32 px (model_kwargs "
         "c1_stride 2, channels [6, 32], pad_input false: 77,562 parameters), C1 set by "
         "patch-whitening and frozen, its bias too (whiten_init, whiten_bias_epochs 0, as airbench "
         "freezes its whitening layer: nothing before C3 trains, so C3's input gradient is never "
         "computed), AdamW 3e-2 with a one-cycle schedule over 2 epochs, label smoothing 0.1, "
         "batch 256. On a 2-core CPU most of a LeNet-5 step went to C1 and S2 at the input's full "
         "resolution and to the backward of the small-channel convolutions. Chosen on a 54k/6k "
         "validation split (mean +- SD over seeds; the paired difference +- its standard error): the "
         "stride-2 C1, C3 maps, padding and batch in round 2 (98.93 +- 0.06% against 98.96 +- "
         "0.03% for the paper's layout padded to 32 px, batch 128, AdamW 6e-3, seeds 0-2: -0.03 "
         "+- 0.04 points, in 0.60x its training time; "
         "benchmarks/results/mnist_fast_tuning_strided-cpu.json), the frozen whitened C1 in round 3 "
         "(98.83 +- 0.07% against 98.82 +- 0.13%, seeds 0-7: +0.01 +- 0.03 points, in 0.72x the "
         "time; "
         "benchmarks/results/mnist_fast_tuning_frozen_c1-cpu.json; round 1: "
         "mnist_fast_tuning-cpu.json). Test accuracy, measured afterwards by "
         "benchmarks/mnist_time_to_acc.py on an Intel Xeon VM (2 threads, otherwise idle): "
         "99.15% / 99.09% / 99.02% for seeds 0/1/2 (99.09 +- 0.07%) in 2.6 s of training on average "
         "(benchmarks/results/mnist_time_to_acc-cpu.json), against 99.09 +- 0.10% in 4.3 and 4.0 s for "
         "round 2's settings timed just before and after "
         "(benchmarks/results/mnist_time_to_acc-frozen-c1-intel/). The paper's layout reached "
         "99.13% in 4.5 s on this project's AMD EPYC; these settings have not run there yet.\n\n"
         "cifar10 / cifar10_jpeg on a CPU: fastnet with widths (64, 128, 256) and BatchNorm "
         "scales fixed, after airbench (Jordan 2024, arXiv 2404.00498): patch-whitening "
         "initialisation of the first 2x2 convolution, whose filters then stay frozen and whose "
         "bias trains for 3 epochs, an exponential moving average of the weights (decay 0.99 "
         "per step, updated every 5 steps) for evaluation, Nesterov SGD (momentum 0.85) with "
         "decoupled weight decay and a 64x learning rate for BatchNorm biases, label smoothing "
         "0.2, 2 epochs of linear warmup then linear decay to 7%, alternating flips + 2-px "
         "translations, test-time augmentation (mirror_translate), batch 256 (on 2 CPU cores a "
         "batch of 256 trains as many images/s as 1024 and gives 4x the optimizer steps), 10 "
         "epochs, bf16 autocast where the CPU computes bf16 natively and trains faster in it "
         "(amp auto: AVX512-BF16 or AMX, and a probe measured once per CPU: bf16 on this "
         "project's AMD EPYC, benchmarks/results/model_throughput-fastnet-bf16/ against -fp32/; "
         "fp32 on an Intel Xeon without AMX where bf16 trained this recipe at 0.62x fp32's "
         "speed; fp32 elsewhere). Chosen on a 45k/5k validation "
         "split of cifar10_jpeg (seed 0): 89.48% validation accuracy in fp32 "
         "(benchmarks/results/cifar_fast_tuning-cpu.json), 89.78% with bf16 "
         "(benchmarks/results/cifar_fast_tuning_bf16-cpu.json). Measured on this project's "
         "2-core AMD EPYC (Zen 5, AVX512-BF16, 2 threads, otherwise idle, torch 2.14.1): "
         "89.65 +- 0.16% test accuracy over seeds 0-2 in 341 s of training on average (374 s "
         "at most; the same recipe in fp32 averaged 1,096 s on 2026-11-24, that file at commit "
         "87b82bc); benchmarks/cifar_cpu_time_to_acc.py measures it.\n\n"
         "cifar10 / cifar10_jpeg on a GPU (cuda): airbench94's network (widths 64, 256, 256) "
         "and batch 1024, learning rate 1.5 (0.375 scaled linearly with the batch), weight "
         "average decay 0.96 per step, updated every 2 steps (the same span in epochs: a "
         "quarter of the steps per epoch), bf16 autocast; no torch.compile by default (its "
         "compilation takes longer than the whole run; --compile adds it); the rest "
         "as on the CPU. These settings trained on the CPU on the 45k/5k split reached 89.98% "
         "validation accuracy (seed 0, benchmarks/results/cifar_fast_tuning_bf16-cpu.json; a "
         "GPU changes the speed, not the arithmetic, beyond "
         "rounding); no GPU has run them yet. benchmarks/gpu_speed.py measures them on a GPU; "
         "its results are in benchmarks/results/ only where a GPU run produced them."),
    per_dataset={
        "mnist": {"model": "lenet5", "model_kwargs": {"activation": "relu", "pool": "max", "c1_stride": 2,
                                                      "channels": [6, 32], "pad_input": False},
                  "val_split": 0.0, "epochs": 2, "batch_size": 256, "optimizer": "adamw",
                  "lr": 3e-2, "weight_decay": 5e-4, "scheduler": "onecycle",
                  "label_smoothing": 0.1, "augment": "none", "channels_last": True,
                  "whiten_init": True, "whiten_bias_epochs": 0},
        **{name: _FAST_CIFAR for name in _CIFAR},
    },
    per_device={"cuda": {name: _FAST_CIFAR_CUDA for name in _CIFAR}},
)

FAST_LONG = Recipe(
    name="fast-long",
    summary="the fast CIFAR-10 recipe with a longer budget: >= 91% in under 30 minutes on a "
            "2-core CPU",
    doc=("The `fast` recipe's CIFAR settings (see `cnnbench recipes fast`) with airbench94's "
         "wider network (widths 64, 256, 256: 1.8x the multiply-adds per image) trained for 18 "
         "epochs, for a user who can wait about three times as long for about 1.8 points more "
         "(measured on this project's 2-core CPU: 91.41 +- 0.14% over seeds 0-2 in 972 s of "
         "training on average, 1,039 s at most, against `fast`'s 89.65% in 341 s; "
         "benchmarks/results/cifar_cpu_time_to_acc-cpu.json). "
         "On a 45k/5k validation split of cifar10_jpeg (seed 0) 16 epochs reached 91.28% "
         "validation accuracy (benchmarks/results/cifar_fast_tuning_bf16-cpu.json), too close to "
         "91% for a target stated on the test set, so the recipe trains 2 epochs more (still "
         "well inside 1,800 s on 2 cores); benchmarks/cifar_cpu_time_to_acc.py "
         "--budget long measures it. On a GPU it takes the `fast` recipe's batch and learning "
         "rate."),
    per_dataset={name: {**_FAST_CIFAR, "model_kwargs": {"widths": [64, 256, 256], "bn_scale": False},
                        "epochs": 18} for name in _CIFAR},
    per_device={"cuda": {name: {k: v for k, v in _FAST_CIFAR_CUDA.items() if k != "model_kwargs"}
                         for name in _CIFAR}},
)


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES`; a duplicate name is a programming error."""
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    normalize_keys(recipe.defaults, f"recipe {recipe.name}")  # typos fail at import time
    for key, values in recipe.per_dataset.items():
        normalize_keys(values, f"recipe {recipe.name}/{key}")
    for device, tables in recipe.per_device.items():
        for key, values in tables.items():
            if key not in recipe.per_dataset:
                raise ValueError(f"recipe {recipe.name!r}: {device} settings for {key!r}, a "
                                 f"dataset it has no settings for")
            normalize_keys(values, f"recipe {recipe.name}/{device}/{key}")
    RECIPES[recipe.name] = recipe
    return recipe


def list_recipes() -> list[Recipe]:
    """Every recipe, sorted by name."""
    return [RECIPES[k] for k in sorted(RECIPES)]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; unknown -> :class:`UserError` listing the valid names."""
    try:
        return RECIPES[name.strip().lower()]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(sorted(RECIPES))} "
                        f"(`cnnbench recipes` describes them)") from None


def recipe_values(name: str, dataset: str | None, device: str = "cpu") -> dict[str, Any]:
    """The defaults recipe ``name`` sets for ``dataset`` on a ``device`` type."""
    return get_recipe(name).values_for(dataset, device)


def _setting(key: str, value: Any, wrap: dict) -> list[str]:
    """``  key: value`` with the value as a YAML config file or ``--model-kwargs`` takes it
    (``{pool: max, pad_input: false}``), wrapped with a hanging indent when it is long."""
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()  # a scalar ends the document
    except yaml.YAMLError:  # not a plain YAML value (a recipe registered from Python): as Python shows it
        text = str(value)
    return textwrap.wrap(f"  {key}: {text}", subsequent_indent="      ", **wrap)


def describe(recipe: Recipe, width: int = 100) -> str:
    """Multi-line description for ``cnnbench recipes NAME``: the summary and the ``doc``
    paragraphs (separated by blank lines) wrapped to ``width`` columns, then the settings, one
    per line (a long value wrapped onto indented lines), written as a config file takes them."""
    wrap = dict(width=width, break_long_words=False, break_on_hyphens=False)
    lines = textwrap.wrap(f"{recipe.name}: {recipe.summary}", subsequent_indent="  ", **wrap)
    for paragraph in recipe.doc.split("\n\n"):
        lines += ["", *textwrap.wrap(" ".join(paragraph.split()), **wrap)]
    lines.append("")
    if recipe.defaults:
        lines.append("settings:")
        lines += [line for k, v in recipe.defaults.items() for line in _setting(k, v, wrap)]
    for key, values in recipe.per_dataset.items():
        lines.append(f"settings for {key}:")
        lines += [line for k, v in values.items() for line in _setting(k, v, wrap)]
    for device, tables in recipe.per_device.items():
        for key, values in tables.items():
            lines.append(f"settings for {key} on {device} (on top of the above):")
            lines += [line for k, v in values.items() for line in _setting(k, v, wrap)]
    return "\n".join(lines)


register_recipe(DEFAULT)
register_recipe(FAST)
register_recipe(FAST_LONG)

__all__ = ["Recipe", "RECIPES", "register_recipe", "list_recipes", "get_recipe",
           "recipe_values", "describe"]
