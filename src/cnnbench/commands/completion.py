"""``cnnbench completion bash|zsh``: a shell completion script, built from the parser itself.

The script knows every sub-command (and ``study``'s actions), each one's options, the values of
options with choices, and the names of models (``--model``, ``models --summary``), built-in
datasets (``--dataset``, ``datasets NAME``), recipes (``--recipe``, ``recipes NAME``) and shipped
studies (``study show|run NAME``). Anything else that takes a value falls back to the shell's
file-name completion. zsh runs the same script through ``bashcompinit``.
"""

from __future__ import annotations

import argparse
import re

from cnnbench.version import __version__
from cnnbench.commands import examples

SHELLS = ("bash", "zsh")
_SAFE = re.compile(r"^[A-Za-z0-9_.:+-]+$")  # values written into the script unquoted


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "completion", help='shell completion: eval "$(cnnbench completion bash)"',
        description="Print a shell completion script for cnnbench: the Tab key then completes "
                    "its commands, options and option values, including model, dataset, recipe "
                    "and study names. Load it into the current shell with `eval \"$(cnnbench "
                    "completion bash)\"`, or install it for every new shell as in the examples.",
        epilog=examples('eval "$(cnnbench completion bash)"',
                        "cnnbench completion bash > ~/.local/share/bash-completion/completions/cnnbench",
                        "echo 'eval \"$(cnnbench completion zsh)\"' >> ~/.zshrc"))
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(script(args.parser, args.shell))
    return 0


def _name_lists() -> dict[str, list[str]]:
    from cnnbench.config.recipes import list_recipes
    from cnnbench.data import list_datasets
    from cnnbench.models import catalog
    from cnnbench.studies.spec import list_studies

    models = catalog.model_names()
    if models is None:  # the catalog is older than the models: ask the registry (torch)
        from cnnbench.models import list_models

        models = list_models()
    return {"models": models, "datasets": list_datasets(),
            "recipes": [r.name for r in list_recipes()],
            "studies": [name for name, _ in list_studies()]}


# which name list completes an option (by dest) or a positional (by command path and dest)
_OPTION_VALUES = {"model": "models", "summary": "models", "dataset": "datasets", "recipe": "recipes"}
_POSITIONAL_VALUES = {("datasets", "names"): "datasets", ("recipes", "name"): "recipes",
                      ("study show", "study"): "studies", ("study run", "study"): "studies"}


def walk(parser: argparse.ArgumentParser, path: str = ""):
    """(command path, parser) of ``parser`` and every sub-command below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, f"{path} {name}".strip())


def _words(values) -> str:
    return " ".join(str(v) for v in values if _SAFE.match(str(v)))


def _quote(path: str) -> str:
    return f'"{path}"' if " " in path or not path else path


def script(parser: argparse.ArgumentParser, shell: str = "bash") -> str:
    """The completion script for ``parser`` (the ``cnnbench`` parser) in ``shell``."""
    names = _name_lists()
    paths, per_path, value_cases = [], [], []
    for path, sub in walk(parser):
        paths.append(path)
        options, valued, candidates, has_positional = [], [], [], False
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                candidates += list(action.choices)
                has_positional = True
                continue
            if not action.option_strings:  # a positional argument
                has_positional = True
                key = _POSITIONAL_VALUES.get((path, action.dest))
                candidates += names[key] if key else list(action.choices or ())
                continue
            strings = action.option_strings
            # offer --batch-size, not also --batch_size (both are accepted)
            options += [s for s in strings if "_" not in s or s.replace("_", "-") not in strings]
            if action.nargs == 0:
                continue
            valued += strings
            key = _OPTION_VALUES.get(action.dest)
            values = names[key] + (["none"] if key == "recipes" else []) if key else action.choices
            if values:
                pattern = "|".join(f'"{path} {s}"' for s in strings)
                value_cases.append(f'        {pattern}) values="{_words(values)}" ;;')
        if not has_positional:  # nothing but options: Tab offers them
            candidates = options
        per_path.append(f'        {_quote(path)}) options="{_words(options)}"; '
                        f'valued=" {_words(valued)} "; candidates="{_words(candidates)}" ;;')
    known = "|".join(_quote(p) for p in paths if p)
    body = f"""\
# {shell} completion for cnnbench {__version__}, written by `cnnbench completion {shell}`
_cnnbench() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmdpath="" word i options="" valued="" candidates="" values=""
    # --option=value: the shell splits it at the '='
    if [[ $cur == "=" ]]; then cur=""; elif [[ $prev == "=" ]]; then prev="${{COMP_WORDS[COMP_CWORD-2]}}"; fi
    # the sub-command (and study's action): the leading words that name one
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$word" in -*) continue ;; esac
        case "${{cmdpath:+$cmdpath }}$word" in
            {known}) cmdpath="${{cmdpath:+$cmdpath }}$word" ;;
            *) break ;;
        esac
    done
    case "$cmdpath" in
{chr(10).join(per_path)}
    esac
    case "$cmdpath $prev" in
{chr(10).join(value_cases)}
    esac
    if [[ -n $values ]]; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    elif [[ $valued != *" $prev "* ]]; then
        COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
    fi  # else: a value without a list (a file, a number): the shell's default completion
}}
complete -o default -F _cnnbench cnnbench
"""
    if shell == "zsh":
        body = ("# zsh runs the bash script through bashcompinit\n"
                "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }\n"
                "autoload -U +X bashcompinit && bashcompinit\n") + body
    return body
