"""A search space: which training options a search varies, and over what, read from YAML.

::

    lr: {low: 1.0e-4, high: 0.1, log: true}         # a float, log-uniform
    weight_decay: {low: 1.0e-6, high: 1.0e-2, log: true}
    epochs: {low: 2, high: 8}                        # integers when both bounds are
    batch_size: [64, 128, 256]                       # a list: one of these
    optimizer: [sgd, adam, adamw]
    augment: [none, flip_crop]

Each key is a :class:`cnnbench.config.TrainConfig` option (``cnnbench train --help``; the same
spellings and aliases as a config file). A mapping is a range (``low``, ``high``, optional
``log: true`` and, for integers, ``step``), a list a choice. Options not in the space come
from the search's command line (its base options). Mistakes are one-line
:class:`~cnnbench.errors.UserError` s naming the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnbench.config.options import normalize_keys
from cnnbench.errors import UserError

__all__ = ["Param", "load_space", "parse_space"]


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched option: a ``float``/``int`` range (``low``, ``high``, ``log``, ``step``)
    or a ``categorical`` choice among ``choices``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """The value an Optuna ``trial`` proposes for this option."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=self.step or 1)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        """``lr: 0.0001 .. 0.1 (log)`` or ``optimizer: sgd | adam``."""
        if self.kind == "categorical":
            return f"{self.name}: {' | '.join(map(str, self.choices))}"
        return (f"{self.name}: {self.low:g} .. {self.high:g}"
                + (" (log)" if self.log else "") + (f" step {self.step}" if self.step else ""))


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{where} must be a number, got {value!r}")
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where} must be a number, got {value!r}") from None
    return value


def _param(name: str, spec: Any, where: str) -> Param:
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise UserError(f"{where}: {name} lists no choices; give at least one value")
        if len(set(map(repr, spec))) != len(spec):
            raise UserError(f"{where}: {name} lists a choice twice")
        return Param(name, "categorical", choices=tuple(spec))
    if not isinstance(spec, Mapping):
        raise UserError(f"{where}: {name} must be a range ({{low: .., high: ..}}) or a list of "
                        f"choices, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or "low" not in spec or "high" not in spec:
        raise UserError(f"{where}: {name} needs low and high (and optionally log, step)"
                        + (f"; unknown key(s) {', '.join(sorted(map(str, unknown)))}" if unknown else ""))
    low, high = (_number(spec[k], f"{where}: {name}.{k}") for k in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: {name}.log must be true or false, got {log!r}")
    if not low < high:
        raise UserError(f"{where}: {name} needs low < high, got {low:g} and {high:g}")
    if log and low <= 0:
        raise UserError(f"{where}: {name} is log-scaled, so low must be > 0, got {low:g}")
    integer = isinstance(low, int) and isinstance(high, int)
    step = spec.get("step")
    if step is not None and (not integer or not isinstance(step, int) or step < 1 or log):
        raise UserError(f"{where}: {name}.step is for integer ranges without log: a whole "
                        f"number >= 1")
    return Param(name, "int" if integer else "float", low, high, log, step)


def parse_space(values: Any, where: str = "search space") -> tuple[Param, ...]:
    """The :class:`Param` s of a space given as a mapping (see the module docstring)."""
    if not isinstance(values, Mapping) or not values:
        raise UserError(f"{where} must map at least one option to a range or a list of choices")
    options = normalize_keys(values, where)  # names checked, aliases resolved: "did you mean"
    if "seed" in options:
        raise UserError(f"{where}: seed is not a hyper-parameter (give the search --seed, or "
                        f"compare seeds with a study)")
    return tuple(_param(name, spec, where) for name, spec in options.items())


def load_space(path: str | Path) -> tuple[Param, ...]:
    """The space in a YAML file."""
    from cnnbench.config.resolve import read_yaml_file

    values = read_yaml_file(path, "search space", "write it as option: range or [choices] "
                            "lines (see `cnnbench search --help`)")
    return parse_space(values, f"search space {path}")
