"""How a run's config is resolved from what the user gave, and the names in it canonicalised.

Precedence, lowest first (:func:`resolve_config`)::

    dataclass default  <  recipe (--recipe NAME)  <  config file (--config FILE)  <  flags

``cnnbench train`` and :func:`cnnbench.train` apply the ``default`` recipe when neither the
options nor the config file name one (``recipe: none``: the plain dataclass defaults), so a
Python run and the CLI with the same options train the same way; a study's runs get the plain
defaults unless they name a recipe. Names are resolved here, once, by the package that owns
them: the model (``LeNet`` -> ``lenet5``, :mod:`cnnbench.models`), the dataset (``MNIST`` ->
``mnist``, :mod:`cnnbench.data`), the recipe (:mod:`cnnbench.config.recipes`) and the
augmentations (:mod:`cnnbench.data.augment`); an unknown name fails here, before any data
loads or a run directory exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cnnbench.config.options import DEFAULTS, FIELDS, TrainConfig, normalize_keys
from cnnbench.config.recipes import recipe_values
from cnnbench.config.values import coerce, parse_batch_schedule
from cnnbench.data.augment import parse_augment
from cnnbench.data.specs import resolve_dataset_name
from cnnbench.devices import device_type
from cnnbench.errors import UserError
from cnnbench.models import resolve_model_name

DEFAULT_RECIPE = "default"  # what `cnnbench train` and cnnbench.train() apply when none is named


def read_yaml_file(path: str | Path, what: str, hint: str) -> Any:
    """The YAML document in ``path`` (``what`` names it in errors, ``hint`` says how to fix
    one): unreadable or invalid YAML -> one-line :class:`UserError` (with the line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}; {hint}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{what} {path} is not valid YAML{where}; {hint}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options of a YAML config file, keys normalised (values checked by the dataclass)."""
    path = Path(path)
    values = read_yaml_file(path, "config file", "write it as option: value lines")
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UserError(f"config file {path} must be a mapping of option: value, got a "
                        f"{type(values).__name__}")
    return normalize_keys(values, f"config file {path}")


def resolve_config(overrides: Mapping[str, Any] | None = None, *,
                   config_file: str | Path | None = None,
                   default_recipe: str | None = DEFAULT_RECIPE) -> TrainConfig:
    """The run's config: dataclass defaults < recipe < ``config_file`` < ``overrides``.

    ``overrides`` are the options given explicitly (flags, a study's per-run options, or the
    keywords of :func:`cnnbench.train`). The recipe is ``overrides['recipe']``, else the file's,
    else ``default_recipe`` (``"default"``, as for ``cnnbench train``; ``None`` or ``"none"``:
    the plain dataclass defaults). Names are checked and canonicalised (module docstring).
    """
    flags = normalize_keys(overrides or {}, "options")
    file_values = read_config_file(config_file) if config_file is not None else {}
    recipe = flags.get("recipe", file_values.get("recipe", default_recipe))
    recipe = None if recipe in (None, "", "none") else str(recipe)
    dataset = flags.get("dataset", file_values.get("dataset"))
    if dataset is not None:  # resolved first: a recipe's values may depend on the dataset
        dataset = resolve_dataset_name(coerce("dataset", dataset, str))
    device = flags.get("device", file_values.get("device", DEFAULTS["device"]))
    recipe_layer = recipe_values(recipe, dataset, device_type(str(device))) if recipe else {}
    explicit = {**file_values, **flags}
    if "batch_schedule" in {**recipe_layer, **explicit} and "epochs" in explicit:
        schedule = {**recipe_layer, **explicit}["batch_schedule"]
        if schedule not in (None, "", "none"):
            total = sum(e for _, e in parse_batch_schedule(str(schedule)))
            if coerce("epochs", explicit["epochs"], int) != total:
                raise UserError(f"epochs {explicit['epochs']} disagrees with batch_schedule "
                                f"{schedule!r} ({total} epochs); leave epochs out")
    merged: dict[str, Any] = {}
    model = DEFAULTS["model"]
    for layer in (recipe_layer, file_values, flags):
        if "model" in layer and "model_kwargs" not in layer and not _same_model(layer["model"], model):
            merged["model_kwargs"] = {}  # model_kwargs belong to the model they came with
        merged.update(layer)
        model = merged.get("model", model)
    merged["recipe"] = recipe
    merged["dataset"] = dataset or resolve_dataset_name(str(merged.get("dataset", DEFAULTS["dataset"])))
    config = TrainConfig(**merged)
    parse_augment(config.augment)  # an unknown augmentation fails before any data loads
    canonical = resolve_model_name(config.model)
    return config if canonical == config.model else dataclasses.replace(config, model=canonical)


def _same_model(a: Any, b: Any) -> bool:
    try:
        return resolve_model_name(str(a).strip()) == resolve_model_name(str(b).strip())
    except UserError:
        return False


def config_from_args(args) -> TrainConfig:
    """The config from parsed ``cnnbench train`` arguments: only the flags actually given
    (parsed with ``argparse.SUPPRESS`` defaults) override the file and the recipe, which is
    ``default`` unless the flags or the file name one."""
    given = {k: v for k, v in vars(args).items() if k in FIELDS}
    return resolve_config(given, config_file=getattr(args, "config", None))


