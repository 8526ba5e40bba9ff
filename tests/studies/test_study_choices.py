"""`choices:` — what changes results that the report did not choose — reaches the runs it
concerns and is shown beside their numbers."""

from __future__ import annotations

import copy
import json

import pytest

from cnnbench.errors import UserError
from cnnbench.report import reproduction, write_report
from cnnbench.report.records import group_runs, load_runs
from cnnbench.studies import load_study, run_study
from study_fixtures import TINY, StubTrainer, write_study

CHOICES = [
    {"what": "initialisation", "runs": ["c"], "cnnbench": "Kaiming fan-out",
     "report": "its code keeps PyTorch's default"},
    {"what": "seed", "cnnbench": "seed 42", "report": "does not print it", "source": "001:12"},
]


def study_with_choices(choices=CHOICES) -> dict:
    study = copy.deepcopy(TINY)
    study["choices"] = choices
    return study


def test_a_choice_reaches_only_the_runs_it_names(tmp_path):
    study = load_study(write_study(tmp_path, study_with_choices()))
    whats = {r.name: [c["what"] for c in r.meta(study)["choices"]] for r in study.runs}
    assert whats == {"a": ["seed"], "b": ["seed"], "c": ["initialisation", "seed"]}


@pytest.mark.parametrize("choices, message", [
    ("seed 0", "choices must be a list"),
    ([{"cnnbench": "x"}], "needs `what`"),
    ([{"what": "seed"}], "needs `cnnbench`"),
    ([{"what": "seed", "cnnbench": "0", "source": "line 3"}], "is not FILE:LINE"),
    ([{"what": "seed", "cnnbench": "0", "colour": "red"}], "colour"),
])
def test_choice_mistakes_are_one_line(tmp_path, choices, message):
    with pytest.raises(UserError, match=message) as info:
        load_study(write_study(tmp_path, study_with_choices(choices)))
    assert "\n" not in str(info.value) and "choices" in str(info.value)


def test_the_report_labels_numbers_with_the_choices_behind_them(tmp_path):
    study = load_study(write_study(tmp_path, study_with_choices()), profile="full")
    run_study(study, tmp_path / "out", train_fn=StubTrainer(), log=lambda s: None)
    items = reproduction.reproductions(group_runs(load_runs([tmp_path / "out"])))
    (c,) = [i for i in items if i.group.label == "c"]
    assert c.on_recipe and c.verdict == "yes, with cnnbench's choices: initialisation, seed"
    md = write_report([tmp_path / "out"], figures=False).markdown.read_text()
    assert ("cnnbench's choice, **initialisation** (c): Kaiming fan-out; the report: its code "
            "keeps PyTorch's default.") in md
    assert "**seed** (a, b, c): seed 42; the report: does not print it (lab report 001, line 12" in md


def test_a_choice_naming_no_run_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"choices\[0\] \(initialisation\): runs \['typo'\] match no"):
        load_study(write_study(tmp_path, study_with_choices([{**CHOICES[0], "runs": ["typo"]}])))
