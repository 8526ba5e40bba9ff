"""Command-line interface: parses arguments and hands them to the library.

Each sub-command lives in ``cnnbench.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a handler taking the
parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnbench import __version__
from cnnbench.errors import UserError

COMMANDS = ("train", "eval", "models", "datasets", "recipes", "study", "report")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["cnnbench", *argv]
    return guarded(lambda: args.func(args), "cnnbench")
