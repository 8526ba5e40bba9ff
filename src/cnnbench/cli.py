"""Command-line interface: parses arguments and calls the matching sub-command.

Each sub-command lives in ``cnnbench.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser (with a user-facing description and an
``examples:`` epilog, see :func:`cnnbench.commands.examples`) and sets ``func`` to a handler
taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import textwrap

from cnnbench.version import __version__
from cnnbench.commands import examples, text_width
from cnnbench.errors import UserError, did_you_mean

COMMANDS = ("train", "eval", "predict", "export", "serve", "models", "datasets", "recipes", "study",
            "search", "report", "completion")

DESCRIPTION = (
    "cnnbench trains, evaluates and compares classic convolutional networks (LeNet-5, AlexNet, "
    "VGG, ResNet, MobileNet, GoogLeNet) on MNIST, Fashion-MNIST, CIFAR-10 and your own image "
    "folders, on a CPU or a GPU. Each run writes its logs, checkpoints and test accuracy to a "
    "run directory; a study trains several runs and a report compares them.")

EPILOG = examples(
    "cnnbench train                     # LeNet-5 on MNIST on the CPU",
    "cnnbench train --model resnet18 --dataset cifar10 --epochs 30",
    "cnnbench study run mnist-five --out runs/mnist-five",
    "cnnbench report runs/mnist-five",
) + "\n\n`cnnbench COMMAND --help` describes a command and its options."


def fill(text: str, width: int | None = None) -> str:
    """Wrap ``text`` to ``width`` (default :func:`text_width`): paragraphs are separated by blank
    lines, runs of unindented lines are filled, indented lines (examples, lists) are kept as
    they are."""
    width = width or text_width()
    out: list[str] = []
    for paragraph in text.strip("\n").split("\n\n"):
        lines: list[str] = []
        run: list[str] = []
        for line in paragraph.splitlines() + [" "]:  # the " " sentinel flushes the last run
            if line[:1].isspace() or not line:
                if run:
                    lines += textwrap.wrap(" ".join(run), width, break_long_words=False,
                                           break_on_hyphens=False) or [""]
                    run = []
                if line.strip():
                    lines.append(line.rstrip())
            else:
                run.append(line.strip())
        out.append("\n".join(lines))
    return "\n\n".join(out)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs wrapped by :func:`fill` (examples keep their lines); the whole
    help at most :data:`MAX_WIDTH` columns wide."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None, **kwargs):
        super().__init__(prog, indent_increment, max_help_position, width or text_width(),
                         **kwargs)

    def _fill_text(self, text, width, indent):
        return textwrap.indent(fill(text, max(width - len(indent), 20)), indent)

    def add_argument(self, action):
        super().add_argument(action)
        # argparse measures sub-commands one indent less than it prints them, so a long name
        # ("completion") would push its help to the next line
        if action.help is not argparse.SUPPRESS and isinstance(action, argparse._SubParsersAction):
            for sub in action._get_subactions():
                self._action_max_length = max(
                    self._action_max_length, len(self._format_action_invocation(sub))
                    + self._current_indent + self._indent_increment)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2, and formats its help
    with :class:`_HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:  # `cnnbench trian`, `--optimizer sdg`
            close = did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
            if close:
                message += f"; did you mean {close!r}?"
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen = _chosen(self, namespace)
            chosen.error(_unrecognized(chosen, extras))
        return namespace


def _chosen(parser: argparse.ArgumentParser, namespace) -> argparse.ArgumentParser:
    """The (sub-)command parser ``namespace`` was parsed by: ``cnnbench study show`` -> show's."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(namespace, sub.dest, None) not in sub.choices:
            return parser
        parser = sub.choices[getattr(namespace, sub.dest)]


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """argparse's "unrecognized arguments" with the option each mistyped flag was likely meant
    to be: ``--epochz 1`` -> ``--epochs``, ``--learning-rate`` -> ``--lr``."""
    canonical = {s: action.option_strings[0] for action in parser._actions
                 for s in action.option_strings}
    hints = {}
    for extra in extras:
        flag = extra.split("=", 1)[0]
        close = did_you_mean(flag, canonical) if flag.startswith("-") else None
        if close:
            hints[flag] = canonical[close]
    text = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        text += f"; did you mean {next(iter(hints.values()))}?"
    elif hints:
        text += "; did you mean " + ", ".join(f"{v} for {k}" for k, v in hints.items()) + "?"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnbench", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"cnnbench {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"cnnbench.commands.{name}").register(sub)
    return parser


def guarded(fn, prog: str) -> int:
    """Call ``fn()`` and return its exit status; a user's mistake (:class:`UserError`) ends in
    one line on stderr with its exit code, Ctrl-C in one line with 130."""
    try:
        return int(fn() or 0)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # a run says where it stands and how to continue it
        print(f"{prog}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnbench models | head`: the reader has gone, so is the output
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["cnnbench", *argv]
    args.parser = parser  # `completion` describes the parser it was called from
    return guarded(lambda: args.func(args), "cnnbench")
