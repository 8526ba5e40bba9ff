"""Option values: strings from flags and YAML coerced to each field's type, and the batch
schedule's grammar. Pure Python: no torch, nothing of cnnbench but its errors."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from cnnbench.errors import UserError


def plain(value):
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    if origin is list:
        inner = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(inner, str(inner))
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string",
            dict: "a mapping"}.get(tp, str(tp))


def coerce(name: str, value: Any, tp) -> Any:
    """``value`` converted to type ``tp``; strings (from flags or YAML) are parsed."""
    def bad():
        return UserError(f"option {name!r} must be {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        try:
            return coerce(name, value, inner)
        except UserError:
            raise bad() from None
    if origin is list:
        inner = typing.get_args(tp)[0]
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise bad()
        return [coerce(name, v, inner) for v in value]
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
