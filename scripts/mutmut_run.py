"""Run mutmut (the command line of ``mutmut``) with one fix to mutmut 3.8.

With ``max_stack_depth`` set (pyproject.toml), mutmut walks the stack of every call of a
mutated function and resolves each frame's file with ``Path.resolve(strict=True)``; a frame
of a frozen module (``<frozen importlib._bootstrap>``, present whenever a function runs while
a module is imported) has no file, so the stats collection fails with FileNotFoundError
before any mutant is tried. Here such frames resolve leniently: they are not cnnbench code,
and are counted as such. mutmut forks its workers from this process, so they inherit it.
"""

from __future__ import annotations

import pathlib
import sys

import mutmut.stats
from mutmut.__main__ import cli


class _LenientPath(type(pathlib.Path())):
    def resolve(self, strict: bool = False):  # noqa: ARG002 - the strict resolve is the bug
        return super().resolve(strict=False)


mutmut.stats.Path = _LenientPath

if __name__ == "__main__":
    sys.exit(cli())
