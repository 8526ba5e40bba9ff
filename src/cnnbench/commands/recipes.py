"""``cnnbench recipes``: list the named sets of training defaults, or show one."""

from __future__ import annotations

import argparse

from cnnbench.commands import examples


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "recipes", help="list the training recipes (sets of defaults), or show one",
        description="Recipes are named sets of `train` defaults, chosen with `cnnbench train "
                    "--recipe NAME`; options and --config still override them (built-in "
                    "defaults < recipe < config file < options). Without NAME this lists the "
                    "recipes; with NAME it shows what the recipe is for, how it was measured and "
                    "every setting it makes.",
        epilog=examples("cnnbench recipes",
                        "cnnbench recipes fast",
                        "cnnbench train --recipe fast --dataset cifar10"))
    parser.add_argument("name", nargs="?", help="show this recipe's documentation and settings")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: every recipe (or NAME) with its settings")
    parser.set_defaults(func=run)


def _as_dict(recipe) -> dict:
    return {"name": recipe.name, "summary": recipe.summary, "doc": recipe.doc,
            "defaults": dict(recipe.defaults),
            "per_dataset": {k: dict(v) for k, v in recipe.per_dataset.items()},
            "per_device": {d: {k: dict(v) for k, v in per.items()}
                           for d, per in recipe.per_device.items()}}


def run(args: argparse.Namespace) -> int:
    from cnnbench.commands import text_width
    from cnnbench.config.recipes import describe, get_recipe, list_recipes

    if args.json:
        import json

        chosen = [get_recipe(args.name)] if args.name else list_recipes()
        print(json.dumps({"recipes": [_as_dict(r) for r in chosen]}, indent=2))
        return 0
    if args.name:
        print(describe(get_recipe(args.name), width=text_width()))
        return 0
    recipes = list_recipes()
    width = max(len(r.name) for r in recipes)
    for recipe in recipes:
        datasets = f" [{', '.join(recipe.per_dataset)}]" if recipe.per_dataset else ""
        print(f"{recipe.name:<{width}}  {recipe.summary}{datasets}")
    print("\n`cnnbench recipes NAME` shows one; `cnnbench train --recipe NAME` uses it.")
    return 0
