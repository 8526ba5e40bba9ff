"""cnnbench: train, evaluate and compare the classic convolutional networks.

The Python API, in the conventions of timm and torchvision::

    import cnnbench

    cnnbench.list_models("resnet*")                  # ['resnet18', 'resnet18_five', ...]
    model = cnnbench.create_model("resnet18")        # torchvision's layout: 1000 classes, 3x224x224
    model = cnnbench.create_model("resnet18", num_classes=10, in_chans=3, input_size=32)  # CIFAR stem

    summary = cnnbench.train(model="lenet5", dataset="mnist", epochs=1)   # like `cnnbench train ...`
    result = cnnbench.evaluate(summary["run_dir"])   # a run directory or a checkpoint

``train`` takes the options of ``cnnbench train`` (keywords, a mapping, or a resolved
:class:`TrainConfig`) and resolves them exactly as the CLI does (the ``default`` recipe unless
one is named, :mod:`cnnbench.config.resolve`), so the same options train the same way. The
heavy modules (torch) are imported when a function is first called, not by ``import cnnbench``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnbench.version import __version__

__all__ = ["__version__", "create_model", "evaluate", "list_models", "train"]


def _user_errors_from_here(fn):
    """A :class:`cnnbench.errors.UserError` (missing data, a bad option) leaves the API call
    with its one-line message and a traceback that ends at the caller's line, not deep inside
    cnnbench; catch it as ``except cnnbench.errors.UserError``."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        from cnnbench.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise exc.with_traceback(None) from None
    return call


@_user_errors_from_here
def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the ``fnmatch`` ``pattern``, in natural order."""
    from cnnbench.models import list_models as _list

    return _list(pattern)


@_user_errors_from_here
def create_model(name: str, pretrained: bool = False, **kwargs) -> Any:
    """An ``nn.Module`` of model ``name``; keywords as :func:`cnnbench.models.create_model`
    (``num_classes=1000, in_chans=3, input_size=224, drop_rate=0.0, stem="auto"`` and the
    family's own, e.g. ``width_mult``).

    ``pretrained=True`` (as in timm and ``--pretrained``) starts it from torchvision's ImageNet
    weights, found in the torch hub cache or downloaded there (hash-checked): all of them for
    torchvision's own models at their defaults; with another ``num_classes`` or ``in_chans``
    the head is new and the first convolution adapted. What was loaded is in
    ``model.pretrained_report`` (a :class:`cnnbench.training.transfer.LoadReport`)."""
    from cnnbench.models import create_model as _create

    model = _create(name, **kwargs)
    if pretrained:
        from cnnbench.training import transfer

        modules = transfer.pretrained_source(model.model_name)[1]
        model.pretrained_report = transfer.load_init_weights(
            model, transfer.pretrained_weights_path(model.model_name),
            num_classes=kwargs.get("num_classes", 1000), in_chans=kwargs.get("in_chans", 3),
            modules=modules)
    return model


@_user_errors_from_here
def train(config: Any = None, *, out_dir: str | Path | None = None, progress: bool = True,
          **options) -> dict[str, Any]:
    """Train one run and return its summary (also written to ``<run_dir>/summary.json``).

    ``config``: a :class:`cnnbench.config.TrainConfig` (used as given), a mapping of
    ``cnnbench train`` options, the path of a YAML file of them, or ``None``; ``options`` are more of them as keywords
    (``model="resnet18", dataset="cifar10", epochs=30, lr=0.1``). Options are resolved as on
    the command line: defaults < recipe (``default`` unless ``recipe=`` names one, ``"none"``
    for the plain defaults) < ``config_file=`` < these options. A mistake raises
    :class:`cnnbench.errors.UserError` with a one-line message.
    """
    from cnnbench.config import TrainConfig
    from cnnbench.config.resolve import resolve_config
    from cnnbench.errors import UserError
    from cnnbench.training import train_run

    if isinstance(config, TrainConfig):
        if {"recipe", "config_file"} & set(options):
            raise UserError("cnnbench.train: a resolved TrainConfig takes no recipe= or "
                            "config_file=; pass the options (a mapping or keywords) instead")
        if config.recipe and "device" in options and options["device"] != config.device:
            raise UserError("cnnbench.train: a resolved TrainConfig keeps the settings its recipe "
                            "chose for its device; to train on another device, pass the options "
                            "(a mapping or keywords) with device= instead")
        resolved = config.replace(**options) if options else config
    elif config is None or isinstance(config, Mapping):
        given = {**(config or {}), **options}
        config_file = given.pop("config_file", None)
        resolved = resolve_config(given, config_file=config_file)
    elif isinstance(config, (str, Path)):  # a YAML file of options
        resolved = resolve_config(options, config_file=config)
    else:
        raise UserError(f"cnnbench.train takes a TrainConfig, a mapping of options or a YAML "
                        f"file, not {type(config).__name__}")
    return train_run(resolved, out_dir=out_dir, progress=progress, argv=["cnnbench.train()"])


@_user_errors_from_here
def evaluate(path: str | Path, split: str = "test", **overrides) -> dict[str, Any]:
    """Evaluate a checkpoint, or a run directory's ``best.ckpt``, on its run's ``test`` (or
    ``val``) split; ``overrides``: ``data_dir``, ``device``, ``batch_size``, ``tta``,
    ``allow_changed_data``. With
    ``best.ckpt`` the accuracy equals the summary's ``test_acc``."""
    from cnnbench.training import evaluate_checkpoint

    return evaluate_checkpoint(path, split, **overrides)
