"""``cnnbench recipes``: list the named sets of training defaults, or show one."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "recipes", help="list the training recipes (--recipe NAME), or show one",
        description="Recipes are named sets of `train` defaults; flags and --config still "
                    "override them. Precedence: built-in defaults < recipe < config file < flags.")
    parser.add_argument("name", nargs="?", help="show this recipe's documentation and settings")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.config.recipes import describe, get_recipe, list_recipes

    if args.name:
        print(describe(get_recipe(args.name)))
        return 0
    recipes = list_recipes()
    width = max(len(r.name) for r in recipes)
    for recipe in recipes:
        datasets = f" [{', '.join(recipe.per_dataset)}]" if recipe.per_dataset else ""
        print(f"{recipe.name:<{width}}  {recipe.summary}{datasets}")
    print("\n`cnnbench recipes NAME` shows one; `cnnbench train --recipe NAME` uses it.")
    return 0
