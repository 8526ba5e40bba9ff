"""scripts/mutmut_run.py: mutmut with its workers given each mutant's tests fastest first."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_mutants_tests_are_handed_over_fastest_first(monkeypatch):
    pytest.importorskip("mutmut")
    from mutmut.state import state
    from mutmut.workers import isolation

    for runner in (isolation.ForkServerRunner, isolation.ForkRunner):  # patched by the import
        monkeypatch.setattr(runner, "submit", runner.submit)
    spec = importlib.util.spec_from_file_location("mutmut_run", ROOT / "scripts" / "mutmut_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isolation.ForkServerRunner.submit.__name__ == "submit_fastest_first"
    assert isolation.ForkRunner.submit.__name__ == "submit_fastest_first"

    monkeypatch.setattr(state(), "duration_by_test", {"t::ray": 18.9, "t::b": 0.5, "t::a": 0.5, "t::fast": 0.01})
    handed = []
    submit = module.fastest_first(lambda self, name, tests, limit, estimate: handed.append((name, tests, limit, estimate)))
    submit(None, "m__mutmut_1", {"t::ray", "t::b", "t::new", "t::a", "t::fast"}, 40, 20.0)
    # a test without a measured duration (added since the stats run) counts as 0 s
    assert handed == [("m__mutmut_1", ["t::new", "t::fast", "t::a", "t::b", "t::ray"], 40, 20.0)]
