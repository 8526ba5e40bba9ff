"""Named, documented sets of ``train`` defaults (``--recipe NAME``; ``cnnbench recipes``).

A recipe is a layer of defaults between the dataclass defaults and the config file / flags
(see :mod:`cnnbench.config.resolve`): anything it sets can still be overridden. A recipe has values
for every dataset (``defaults``) and, optionally, values per dataset (``per_dataset``, keyed
by dataset name; ``imagefolder:PATH`` matches the key ``imagefolder``). A recipe with
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

from cnnbench.config.options import DEFAULTS, normalize_keys
from cnnbench.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A named set of defaults: ``defaults`` for every dataset, ``per_dataset`` on top."""

    name: str
    summary: str
    doc: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def values_for(self, dataset: str | None) -> dict[str, Any]:
        """The defaults this recipe sets for ``dataset`` (``None``: the recipe's own dataset,
        else the dataclass default dataset)."""
        values = normalize_keys(self.defaults, f"recipe {self.name}")
        if not self.per_dataset:
            return values
        dataset = dataset or values.get("dataset") or DEFAULTS["dataset"]
        key = dataset.split(":", 1)[0] if dataset.startswith("imagefolder:") else dataset
        if key not in self.per_dataset:
            raise UserError(f"recipe {self.name!r} has no settings for dataset {dataset!r}; it "
                            f"covers {', '.join(self.per_dataset)}")
        return {**values, **normalize_keys(self.per_dataset[key], f"recipe {self.name}/{key}")}


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


FAST = Recipe(
    name="fast",
    summary="the fastest CPU recipes: MNIST to 99% in seconds, CIFAR-10 to ~89-90% in ~20 minutes",
    doc=("Time-to-accuracy recipes for a CPU without a GPU (they run unchanged on CUDA; add "
         "--amp bf16 --compile there). They train on all training images (val_split 0: no "
         "model selection, the final weights are tested once).\n\n"
         "mnist: LeNet-5 (ReLU, max-pooling), AdamW 4e-3 with a one-cycle schedule over 3 "
         "epochs, label smoothing 0.1, batch 128: the default recipe's optimizer settings, "
         "shortened; on a 54k/6k validation split it beat lr 3e-3 without smoothing (99.00% vs "
         "98.92% validation accuracy after 3 epochs, seed 1). benchmarks/mnist_time_to_acc.py "
         "measures it.\n\n"
         "cifar10 / cifar10_jpeg: fastnet with widths (64, 128, 256) and BatchNorm scales fixed, "
         "after airbench (Jordan 2024, arXiv 2404.00498): patch-whitening initialisation of the "
         "first 2x2 convolution, whose filters then stay frozen and whose bias trains for 3 "
         "epochs (as airbench; it also makes the later steps cheaper), an exponential moving "
         "average of the weights (decay 0.99 per step, updated every 5 steps) for evaluation, "
         "Nesterov SGD (momentum 0.85) with decoupled weight decay and a "
         "64x learning rate for BatchNorm biases, label smoothing 0.2, 2 epochs of linear warmup "
         "then linear decay to 7%, alternating flips + 2-px translations, test-time augmentation "
         "(mirror + translate), batch 256 (on 2 CPU cores a batch of 256 trains as many images/s "
         "as 1024 and gives 4x the optimizer steps), 10 epochs. Chosen on a 45k/5k validation "
         "split of cifar10_jpeg (seed 0), never on the test set (benchmarks/results/cifar_fast_tuning-cpu.json): 89.30% validation accuracy "
         "without the whitening freeze and the average, 89.48% with them; progressive resizing "
         "(5 of 12 epochs at 24 px, about the same training time) reached 89.46%, so it is left "
         "out; benchmarks/cifar_cpu_time_to_acc.py "
         "measures it."),
    per_dataset={
        "mnist": {"model": "lenet5", "model_kwargs": {"activation": "relu", "pool": "max"},
                  "val_split": 0.0, "epochs": 3, "batch_size": 128, "optimizer": "adamw",
                  "lr": 4e-3, "weight_decay": 5e-4, "scheduler": "onecycle",
                  "label_smoothing": 0.1, "augment": "none", "channels_last": True},
        **{name: {"model": "fastnet", "model_kwargs": {"widths": [64, 128, 256], "bn_scale": False},
                  "val_split": 0.0, "epochs": 10, "batch_size": 256, "optimizer": "sgd",
                  "momentum": 0.85, "nesterov": True, "lr": 0.375, "decouple_wd": True,
                  "weight_decay": 5e-4, "bn_lr_scale": 64.0, "label_smoothing": 0.2,
                  "scheduler": "linear", "warmup_epochs": 2, "final_lr_frac": 0.07,
                  "augment": "altflip+translate", "whiten_init": True, "whiten_bias_epochs": 3,
                  "ema": 0.99, "ema_every": 5, "tta": "mirror_translate", "channels_last": True}
           for name in ("cifar10", "cifar10_jpeg")},
    },
)


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES`; a duplicate name is a programming error."""
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    normalize_keys(recipe.defaults, f"recipe {recipe.name}")  # typos fail at import time
    for key, values in recipe.per_dataset.items():
        normalize_keys(values, f"recipe {recipe.name}/{key}")
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


def recipe_values(name: str, dataset: str | None) -> dict[str, Any]:
    """The defaults recipe ``name`` sets for ``dataset``."""
    return get_recipe(name).values_for(dataset)


def describe(recipe: Recipe, width: int = 100) -> str:
    """Multi-line description for ``cnnbench recipes NAME``: the summary and the ``doc``
    paragraphs (separated by blank lines) wrapped to ``width`` columns, then the settings, one
    per line."""
    wrap = dict(width=width, break_long_words=False, break_on_hyphens=False)
    lines = textwrap.wrap(f"{recipe.name}: {recipe.summary}", subsequent_indent="  ", **wrap)
    for paragraph in recipe.doc.split("\n\n"):
        lines += ["", *textwrap.wrap(" ".join(paragraph.split()), **wrap)]
    lines.append("")
    if recipe.defaults:
        lines.append("settings:")
        lines += [f"  {k}: {v}" for k, v in recipe.defaults.items()]
    for key, values in recipe.per_dataset.items():
        lines.append(f"settings for {key}:")
        lines += [f"  {k}: {v}" for k, v in values.items()]
    return "\n".join(lines)


register_recipe(DEFAULT)
register_recipe(FAST)

__all__ = ["Recipe", "RECIPES", "register_recipe", "list_recipes", "get_recipe",
           "recipe_values", "describe"]
