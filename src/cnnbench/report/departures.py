"""Like for like, decided by the data: how a study run's options depart from its report's
recipe.

The study runner writes them into the run's ``study.json``: ``options`` (what the run
trained with: its profile, ``--set`` and ``--dataset`` included), ``recipe`` (the same run
in the study's full profile, without ``--set`` or ``--dataset``: the report's recipe) and
``profile_recipe`` (the same in the run's own profile: a quick or capped run departs from
the recipe by its profile, which the report says once, and by what changed that). Every
option that differs is a reason, in words, why cnnbench's number is not set against the
report's. The report computes a difference only when there is none.
"""

from __future__ import annotations

import json

# A run may differ from its report's recipe in the options that are not the recipe (where and
# how it was made, its seed: cnnbench.config.ROLES) and still be the report's recipe; every
# other option counts, `--set` and `--dataset` included.
from cnnbench.config import NOT_RECIPE
from cnnbench.data.specs import stands_in_for

NOT_RECORDED = ("the report's recipe is not recorded in study.json (run made before cnnbench "
                "recorded it; run the study again to refresh the record)")


def recipe_departures(study: dict) -> list[str]:
    """How the run of ``study`` (its ``study.json``) departs from its report's recipe, one
    reason per option; empty when it is on the recipe, or when it is not a study's run (no
    report to compare with). A run without a recorded recipe cannot be shown to be on it,
    so that is a reason too."""
    if not study.get("study"):
        return []
    recipe, options = study.get("recipe"), study.get("options")
    if not isinstance(recipe, dict) or not isinstance(options, dict):
        return [NOT_RECORDED]
    if options.get("profile", "full") != "full" and isinstance(study.get("profile_recipe"), dict):
        # a quick or capped run is already not the recipe (its profile says so): name only
        # what changed its profile's version of the recipe (--set, --dataset)
        recipe = study["profile_recipe"]
    out = []
    for key in sorted((set(recipe) | set(options)) - NOT_RECIPE):
        ours, theirs = _value(options, key), _value(recipe, key)
        if _same(ours, theirs):
            continue
        stand_in = stands_in_for(str(ours)) if key == "dataset" else None
        if stand_in is not None and stand_in[0] == theirs:  # why, from the dataset registry
            out.append(f"dataset {ours}, not the report's {theirs}: {stand_in[1]}")
        else:
            out.append(f"{key} {_text(ours)} (the report's recipe: {_text(theirs)})")
    return out


def _value(options: dict, key: str):
    """An option's value; one a study leaves unset is the ``train`` default it runs with."""
    if options.get(key) is not None:
        return options[key]
    from cnnbench.config import TrainConfig  # pure Python, no torch

    field = TrainConfig.__dataclass_fields__.get(key)
    return None if field is None or not isinstance(field.default, (int, float, str, bool)) \
        else field.default


def _same(a, b) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _text(value) -> str:
    if value is None:
        return "unset"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
