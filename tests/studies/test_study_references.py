"""A study run's `reference:` (every number its lab report published) and `differs:`."""

from __future__ import annotations

import json

import pytest

from cnnbench.errors import UserError
from cnnbench.report import write_report
from cnnbench.studies import Reference, load_study, run_study
from study_fixtures import TINY, StubTrainer, write_study

REFERENCES = [
    {"metric": "test_acc", "value": 97.02, "wording": "Test loss 1.960664 acc 97.0200%",
     "source": "000:797"},
    {"metric": "val_acc", "value": 96.45, "source": "000:796"},
    {"metric": "test_loss", "value": 1.960664, "comparable": False,
     "note": "the report's loss is summed over batches"},
    {"metric": "epoch_time_s", "value": 0.0222, "unit": "min", "note": "4 GB laptop GPU"},
    {"metric": "params", "value": 61706},
    {"metric": "test_acc", "value": [64, 68]},
]


def study_with(reference=None, differs=None, **run) -> dict:
    entry = {"name": "a", **run}
    if reference is not None:
        entry["reference"] = reference
    if differs is not None:
        entry["differs"] = differs
    return dict(TINY, runs=[entry])


def only_run(tmp_path, study: dict, profile: str = "full"):
    return load_study(write_study(tmp_path, study), profile=profile).runs[0]


def test_the_list_format(tmp_path):
    run = only_run(tmp_path, study_with(REFERENCES, differs="no pretrained weights offline"))
    refs = run.references
    assert [r.metric for r in refs] == ["test_acc", "val_acc", "test_loss", "epoch_time_s",
                                       "params", "test_acc"]
    assert refs[0] == Reference(value=97.02, metric="test_acc",
                                wording="Test loss 1.960664 acc 97.0200%", source="000:797")
    assert refs[5].value == (64.0, 68.0)
    # comparable: accuracies and counts by default, losses and times only when told
    assert [r.comparable for r in refs] == [True, True, False, False, True, True]
    assert refs[3].unit == "min" and refs[3].value == pytest.approx(0.0222)
    assert run.differs == "no pretrained weights offline"


def test_a_single_mapping_is_a_list_of_one_and_null_is_none(tmp_path):
    run = only_run(tmp_path, study_with({"value": 91.3, "wording": "91.3%"}))
    assert run.references == (Reference(value=91.3, wording="91.3%"),)
    assert run.references[0].metric == "test_acc"
    assert only_run(tmp_path, study_with(None)).references == ()
    assert only_run(tmp_path, study_with([])).references == ()


def test_time_units_default_to_seconds(tmp_path):
    run = only_run(tmp_path, study_with([{"metric": "train_time_s", "value": 90}]))
    assert run.references[0].unit == "s" and run.references[0].kind == "time"


def test_study_json_holds_the_references_and_differs(tmp_path):
    study = load_study(write_study(tmp_path, study_with(REFERENCES[:4], differs="not alike")),
                       profile="quick")
    meta = study.runs[0].meta(study)
    assert meta["differs"] == "not alike"
    assert meta["reference"][0] == {
        "value": 97.02, "metric": "test_acc", "unit": None,
        "wording": "Test loss 1.960664 acc 97.0200%", "source": "000:797", "note": "",
        "comparable": True}
    assert meta["reference"][3]["unit"] == "min" and meta["reference"][3]["value"] == 0.0222
    json.dumps(meta)  # plain JSON
    plain = load_study(write_study(tmp_path, study_with(None)), profile="quick")
    assert plain.runs[0].meta(plain)["reference"] == []
    assert plain.runs[0].meta(plain)["differs"] is None


@pytest.mark.parametrize("reference, message", [
    ({"metric": "top5_acc", "value": 90}, "unknown metric 'top5_acc'; choose one of test_acc"),
    ({"metric": "test_loss", "value": [1, 2]}, "a range \\[low, high\\] is only for accuracies"),
    ({"metric": "test_acc", "value": [68, 64]}, "a range must be \\[low, high\\]"),
    ({"metric": "test_acc", "value": [64, 66, 68]}, "a range must be \\[low, high\\]"),
    ({"metric": "test_acc", "value": 0.97e3}, "an accuracy is in percent \\(0 to 100\\)"),
    ({"metric": "test_acc", "value": "97%"}, "value must be a number in percent"),
    ({"metric": "test_acc", "value": True}, "value must be a number"),
    ({"metric": "params"}, "value must be a number, got None"),
    ({"metric": "epoch_time_s", "value": 2, "unit": "minutes"}, "unknown unit 'minutes'; use s"),
    ({"metric": "test_acc", "value": 97, "unit": "s"}, "unit is only for times"),
    ({"metric": "train_time_s", "value": -3}, "must not be negative"),
    ({"metric": "test_acc", "value": 97, "source": 797}, "source must be a quoted"),
    ({"metric": "test_acc", "value": 97, "source": "report 0"}, "source must be a quoted"),
    ({"metric": "test_acc", "value": 97, "comparable": "yes"}, "comparable must be true or false"),
    ({"metric": "test_acc", "value": 97, "page": 3}, "unknown key\\(s\\) page"),
    ([{"metric": "test_acc", "value": 97}, "97"], "reference\\[1\\] must be a mapping"),
    ("97", "must be a list of mappings"),
])
def test_reference_mistakes_are_one_line_user_errors(tmp_path, reference, message):
    with pytest.raises(UserError, match=message) as caught:
        only_run(tmp_path, study_with(reference))
    assert "\n" not in str(caught.value)
    assert "runs[0]: reference" in str(caught.value)  # says where


@pytest.mark.parametrize("differs", ["", 3, ["a"]])
def test_differs_is_a_sentence(tmp_path, differs):
    with pytest.raises(UserError, match="differs must be a sentence"):
        only_run(tmp_path, study_with(differs=differs))


def test_a_studys_references_reach_its_report(tmp_path):
    """study file -> study.json -> the report's reproduction table, for a full and a quick run."""
    for profile, expected in (("full", ["a", "test acc", "50 % [1]", "50.00 %", "+0.00 pp",
                                        "inside", "full", "yes"]),
                              ("quick", ["a", "test acc", "50 % [1]", "50.00 %", "—", "—",
                                         "**quick, limited**", "no: quick smoke test"])):
        out = tmp_path / profile
        study = load_study(write_study(tmp_path, study_with(
            [{"metric": "test_acc", "value": 50, "source": "001:12"}])), profile=profile)
        run_study(study, out, train_fn=StubTrainer(), log=lambda s: None)
        md = write_report([out], figures=False).markdown.read_text()
        line = next(x for x in md.split("### Reproduction")[1].splitlines()
                    if x.startswith("| a |"))
        assert [c.strip() for c in line.strip("|").split(" | ")] == expected
        assert "in lab report 001, line 12 (`../shared/seeds/001_*.txt`)" in md


def test_the_documented_study_file_loads(tmp_path):
    """The example of the format's documentation (cnnbench.studies) is a valid study file."""
    import textwrap

    import yaml

    import cnnbench.studies

    doc = cnnbench.studies.__doc__
    block = doc.split("Study file (the shipped ones are ``cnnbench/studies/*.yaml``)::\n")[1]
    block = block.split("\n\nA run's options")[0]
    study = load_study(write_study(tmp_path, yaml.safe_load(textwrap.dedent(block))))
    runs = {r.name: r for r in study.runs}
    assert [r.metric for r in runs["simple-cnn"].references] == [
        "test_acc", "val_acc", "test_loss", "epoch_time_s", "params", "test_acc"]
    assert runs["vgg16-finetuned"].differs.startswith("no ImageNet-pretrained weights")
