"""scripts/mutation_report.py: the score from the saved verdicts, where a mutant explained as
equivalent counts only while its function's source is the one it was read in."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def report(tmp_path, monkeypatch):
    pytest.importorskip("mutmut")
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # it imports mutation_verdicts
    spec = importlib.util.spec_from_file_location("mutation_report", ROOT / "scripts" / "mutation_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(module, "REPO", tmp_path)
    monkeypatch.setattr(module, "EXPLAINED", tmp_path / "docs" / "mutation-explained.json")
    name = "cnnbench.demo.x_f__mutmut_"
    (tmp_path / "docs" / "mutation-verdicts.json").write_text(json.dumps({
        "settings": "s", "commit": "abc1234", "wall_s": 60, "saved": "2026-12-06",
        "files": {"src/cnnbench/demo.py": {"function_hashes": {"x_f": "h1"},
                                           "exit_codes": {name + "1": 1, name + "2": 0,
                                                          name + "3": 33, name + "4": None}}}}))
    return module, name


def explain(tmp_path, entries):
    (tmp_path / "docs" / "mutation-explained.json").write_text(json.dumps(entries))


def test_an_explained_survivor_leaves_the_score_and_the_list(report, tmp_path):
    module, name = report
    explain(tmp_path, {name + "2": {"why": "equivalent", "function_hash": "h1"}})
    result = module.collect()
    demo = result["modules"]["cnnbench.demo"]
    assert (demo["mutants"], demo["detected"], demo["explained"], demo["not_run"]) == (3, 1, 1, 1)
    assert demo["score"] == result["score"] == 0.5  # 1 detected of the 2 not explained
    assert demo["not_detected"] == [name + "3: no tests"]
    assert result["commit"] == "abc1234"


def test_an_explanation_of_a_changed_function_or_a_detected_mutant_is_stale(report, tmp_path, capsys):
    module, name = report
    explain(tmp_path, {name + "2": {"why": "equivalent", "function_hash": "h0"},
                       name + "1": {"why": "equivalent", "function_hash": "h1"}})
    result = module.collect()
    assert result["explained"] == 0 and result["score"] == pytest.approx(1 / 3)
    out = capsys.readouterr().out
    assert f"{name}2 in mutation-explained.json is stale (its function changed)" in out
    assert f"{name}1 in mutation-explained.json is stale (killed)" in out


def test_explain_records_survivors_with_their_functions_hash_and_refuses_the_rest(report, tmp_path):
    module, name = report
    assert module.main(["mutation_report.py", "explain", "same output", name + "2", name + "3"]) == 0
    entries = json.loads((tmp_path / "docs" / "mutation-explained.json").read_text())
    assert entries == {name + "2": {"why": "same output", "function_hash": "h1"},
                       name + "3": {"why": "same output", "function_hash": "h1"}}
    assert module.collect()["explained"] == 2
    for other, status in ((name + "1", "is killed"), (name + "4", "is not checked"),
                          ("cnnbench.demo.x_g__mutmut_1", "is not a saved mutant")):
        with pytest.raises(SystemExit, match=f"{other} {status}, not undetected"):
            module.main(["mutation_report.py", "explain", "why", other])
    with pytest.raises(SystemExit, match="say why"):
        module.explain(" ", [name + "2"])
    assert json.loads((tmp_path / "docs" / "mutation-explained.json").read_text()) == entries
