"""Run mutmut (the command line of ``mutmut``) with two fixes to mutmut 3.8.

With ``max_stack_depth`` set (pyproject.toml), mutmut walks the stack of every call of a
mutated function and resolves each frame's file with ``Path.resolve(strict=True)``; a frame
of a frozen module (``<frozen importlib._bootstrap>``, present whenever a function runs while
a module is imported) has no file, so the stats collection fails with FileNotFoundError
before any mutant is tried. Here such frames resolve leniently: they are not cnnbench code,
and are counted as such. mutmut forks its workers from this process, so they inherit it.

And each mutant's tests run fastest first. mutmut hands a worker the tests that reach the
mutated function as ``list()`` of a set, an order that changes with every process's string
hashing, and pytest runs them in that order until the first failure (``-x``): a mutant that a
0.01 s test kills could first wait for the 19 s Ray-cluster test. Sorted by the durations of the
stats run, a killed mutant costs its cheapest failing test; a surviving one costs the same as
before, and the verdict is the same in any order.

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
from mutmut.state import state
from mutmut.workers import isolation


class _LenientPath(type(pathlib.Path())):
    def resolve(self, strict: bool = False):  # noqa: ARG002 - the strict resolve is the bug
        return super().resolve(strict=False)


def fastest_first(submit):
    """``submit`` of a mutmut runner, given the mutant's tests in the order of their measured
    durations (then names: the same order in every process)."""
    def submit_fastest_first(self, mutant_name, tests, *args, **kwargs):
        durations = state().duration_by_test
        return submit(self, mutant_name, sorted(tests, key=lambda t: (durations.get(t, 0.0), t)),
                      *args, **kwargs)
    return submit_fastest_first


mutmut.stats.Path = _LenientPath
for _runner in (isolation.ForkServerRunner, isolation.ForkRunner):
    _runner.submit = fastest_first(_runner.submit)
if os.environ.get("CNNBENCH_MUTMUT_STACK_DEPTH"):
    config().max_stack_depth = int(os.environ["CNNBENCH_MUTMUT_STACK_DEPTH"])

if __name__ == "__main__":
    sys.exit(cli())
