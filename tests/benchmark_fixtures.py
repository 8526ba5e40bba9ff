"""Helpers of the benchmark scripts' tests: load a script from benchmarks/, run its main() with
a command line, read the one JSON it wrote (its environment checked), and a temporary
--results-dir that must leave benchmarks/results/ untouched."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load_script(name: str, monkeypatch):
    """``benchmarks/<name>.py`` as a module."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import `common` as a sibling
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, args: list[str], monkeypatch, module=None) -> int | None:
    """Call ``benchmarks/<name>.py``'s ``main()`` (``module``: that script, already loaded)
    with ``args`` as its command line."""
    module = module or load_script(name, monkeypatch)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    threads = torch.get_num_threads()
    try:
        return module.main()
    finally:
        torch.set_num_threads(threads)  # the scripts set their own: not for the tests after them


def read_result(results: Path, name: str) -> dict:
    """The one JSON the benchmark wrote, with its environment checked."""
    assert [p.name for p in results.iterdir() if p.suffix == ".json"] == [f"{name}-cpu.json"]
    record = json.loads((results / f"{name}-cpu.json").read_text())
    assert record["benchmark"] == name
    env = record["environment"]
    assert env["device"] == "cpu" and env["device_name"].startswith("CPU")
    assert env["git_commit"] and env["date"].startswith("20") and env["torch_version"]
    load = env["machine_load"]
    assert set(load) == {"other_cpu_share", "otherwise_idle"}
    if load["other_cpu_share"] is not None:
        assert 0 <= load["other_cpu_share"] <= 1 and isinstance(load["otherwise_idle"], bool)
    return record


def positive(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def fraction(*values) -> bool:
    return all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values)


@pytest.fixture
def results(tmp_path):
    before = sorted(p.name for p in (BENCHMARKS / "results").iterdir())
    yield tmp_path / "results"
    assert sorted(p.name for p in (BENCHMARKS / "results").iterdir()) == before
