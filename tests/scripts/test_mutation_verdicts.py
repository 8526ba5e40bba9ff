"""scripts/mutation_verdicts.py: mutmut's verdicts saved in the repository come back in a fresh
checkout for the functions that did not change, and only for those."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = """\
[tool.mutmut]
source_paths = ["src/pkg"]
only_mutate = ["src/pkg/m.py"]
max_stack_depth = 4
mutate_only_covered_lines = false
"""
SOURCE = """\
def add(a, b):
    return a + b


def bigger(a, b):
    return a > b
"""


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A tiny project with mutmut's mutants of one module made, as mutmut makes them, and the
    script as a module."""
    mutmut_main = pytest.importorskip("mutmut.__main__")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "m.py").write_text(SOURCE)
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)  # mutmut works in the current folder
    make_mutants(mutmut_main, tmp_path)
    return tmp_path, mutmut_main, load("mutation_verdicts")


def make_mutants(mutmut_main, root: Path) -> dict:
    out = Path("mutants/src/pkg/m.py")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = mutmut_main.create_mutants_for_file(Path("src/pkg/m.py"), out)
    assert result.error is None, result.error
    return json.loads((root / "mutants/src/pkg/m.py.meta").read_text())


def set_verdicts(root: Path, verdict) -> dict:
    meta_path = root / "mutants/src/pkg/m.py.meta"
    meta = json.loads(meta_path.read_text())
    meta["exit_code_by_key"] = {k: verdict(k) for k in meta["exit_code_by_key"]}
    meta_path.write_text(json.dumps(meta))
    return meta["exit_code_by_key"]


def test_saved_verdicts_come_back_for_unchanged_functions_only(repo):
    root, mutmut_main, verdicts = repo
    codes = set_verdicts(root, lambda k: 1 if "add" in k else 0)
    assert any("add" in k for k in codes) and any("bigger" in k for k in codes)
    verdicts.save(root)
    saved = json.loads((root / "docs/mutation-verdicts.json").read_text())
    assert saved["files"]["src/pkg/m.py"]["exit_codes"] == codes

    shutil.rmtree(root / "mutants")  # a fresh checkout: no mutants/
    (root / "src/pkg/m.py").write_text(SOURCE.replace("a > b", "a >= b"))  # `bigger` changed
    assert verdicts.restore(root) == len(codes)
    remade = make_mutants(mutmut_main, root)["exit_code_by_key"]
    assert {k: v for k, v in remade.items() if "add" in k} == {k: 1 for k in codes if "add" in k}
    assert all(v is None for k, v in remade.items() if "bigger" in k)  # tried again


def test_restore_keeps_mutmuts_own_newer_results(repo):
    root, mutmut_main, verdicts = repo
    set_verdicts(root, lambda k: 0)
    verdicts.save(root)
    newer = set_verdicts(root, lambda k: 1)
    assert verdicts.restore(root) == 0
    meta = json.loads((root / "mutants/src/pkg/m.py.meta").read_text())
    assert meta["exit_code_by_key"] == newer


def test_verdicts_of_other_test_settings_are_not_reused(repo):
    root, mutmut_main, verdicts = repo
    set_verdicts(root, lambda k: 1)
    verdicts.save(root)
    shutil.rmtree(root / "mutants")
    (root / "pyproject.toml").write_text(PYPROJECT.replace("max_stack_depth = 4", "max_stack_depth = 2"))
    assert verdicts.restore(root) == 0
    assert not (root / "mutants").exists()


def test_the_mutants_to_try_again_are_the_survivors_and_the_unreached(repo):
    root, mutmut_main, verdicts = repo
    codes = set_verdicts(root, lambda k: 0 if "add" in k else 33)
    assert verdicts.undetected(root) == sorted(codes)  # survived, or no test reached them
    # one explained as equivalent for add's source as it is: no test can detect it; one
    # explained for an older source of bigger: tried again
    meta = json.loads((root / "mutants/src/pkg/m.py.meta").read_text())
    first_add, first_bigger = (min(k for k in codes if f.split("_")[1] in k) for f in ("x_add", "x_bigger"))
    (root / "docs" / "mutation-explained.json").write_text(json.dumps({
        first_add: {"why": "equivalent", "function_hash": meta["hash_by_function_name"]["x_add"]},
        first_bigger: {"why": "equivalent", "function_hash": "older"}}))
    assert verdicts.undetected(root) == sorted(set(codes) - {first_add})
    set_verdicts(root, lambda k: 1 if "add" in k else None)  # killed, or not tried yet
    assert verdicts.undetected(root) == []


def test_the_wall_time_grows_by_each_stopped_runs_time_once(repo, monkeypatch):
    """A run stopped and saved counts its time since mutation.sh wrote ``.started``; a second
    save does not count it again; the total comes back with the verdicts in a fresh checkout."""
    root, mutmut_main, verdicts = repo
    set_verdicts(root, lambda k: 1)
    (root / "mutants/.wall_seconds").write_text("600")  # earlier runs
    (root / "mutants/.started").write_text("1000")
    monkeypatch.setattr(verdicts.time, "time", lambda: 1000 + 120.5)
    assert verdicts.save(root)["wall_s"] == pytest.approx(720.5)
    assert verdicts.save(root)["wall_s"] == 720  # saved again: nothing added
    assert not (root / "mutants/.started").exists()
    shutil.rmtree(root / "mutants")
    verdicts.restore(root)
    assert (root / "mutants/.wall_seconds").read_text() == "720"
    (root / "mutants/.started").write_text("2000")  # the next run, without a total before
    (root / "mutants/.wall_seconds").unlink()
    monkeypatch.setattr(verdicts.time, "time", lambda: 2000 + 60)
    make_mutants(mutmut_main, root)
    assert verdicts.save(root)["wall_s"] == 60
