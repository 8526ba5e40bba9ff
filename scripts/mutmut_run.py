"""Run mutmut (the command line of ``mutmut``) with one fix to mutmut 3.8.

With ``max_stack_depth`` set (pyproject.toml), mutmut walks the stack of every call of a
mutated function and resolves each frame's file with ``Path.resolve(strict=True)``; a frame
of a frozen module (``<frozen importlib._bootstrap>``, present whenever a function runs while
a module is imported) has no file, so the stats collection fails with FileNotFoundError
before any mutant is tried. Here such frames resolve leniently: they are not cnnbench code,
and are counted as such. mutmut forks its workers from this process, so they inherit it.

``CNNBENCH_MUTMUT_STACK_DEPTH=N`` overrides pyproject.toml's ``max_stack_depth`` for one run
(-1: every test that reaches a function), for the mutants that no test reached within the
usual depth ("no tests"): move ``mutants/mutmut-stats.json`` aside so that the tests are mapped
again at that depth, run those mutants by name, then move it back (docs/testing.md).
"""

from __future__ import annotations

import os
import pathlib
import sys

import mutmut.stats
from mutmut.__main__ import cli
from mutmut.configuration import config


class _LenientPath(type(pathlib.Path())):
    def resolve(self, strict: bool = False):  # noqa: ARG002 - the strict resolve is the bug
        return super().resolve(strict=False)


mutmut.stats.Path = _LenientPath
if os.environ.get("CNNBENCH_MUTMUT_STACK_DEPTH"):
    config().max_stack_depth = int(os.environ["CNNBENCH_MUTMUT_STACK_DEPTH"])

if __name__ == "__main__":
    sys.exit(cli())
