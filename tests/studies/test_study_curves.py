"""A study run's `curves:` (the per-epoch series its lab report printed): the format, its
one-line errors, study.json, and the shipped transcriptions checked against the reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnnbench.errors import UserError
from cnnbench.studies import list_studies, load_study
from cnnbench.studies.fields import Curve
from study_fixtures import TINY, write_study

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"

VAL_ACC = {"metric": "val_acc", "unit": "%", "source": "000:657-666",
           "points": [[10, 93.433334], [20, 94.950005]], "note": "as printed"}
TIME = {"metric": "epoch_time_s", "unit": "min", "source": "000:699-700",
        "points": [[1, 3.3726], [2, 3.3731]]}
LOSS = {"metric": "train_loss", "source": "000:742-742", "points": [[1, 5.250936]],
        "note": "summed over batches"}


def study_with(curves, name: str = "lenet") -> dict:
    return dict(TINY, runs=[{"name": name, "curves": curves}])


def only_run(tmp_path, study: dict, profile: str = "full"):
    return load_study(write_study(tmp_path, study), profile=profile).runs[0]


def test_the_format(tmp_path):
    run = only_run(tmp_path, study_with([VAL_ACC, TIME, LOSS]))
    acc, time, loss = run.curves
    assert acc == Curve(metric="val_acc", points=((10, 93.433334), (20, 94.950005)),
                        source="000:657-666", unit="%", note="as printed")
    assert time.unit == "min" and time.kind == "time" and time.points[1] == (2, 3.3731)
    assert loss.unit == "" and loss.kind == "loss" and loss.note == "summed over batches"
    # the unit of an accuracy is percent when not given; one mapping is a list of one
    run = only_run(tmp_path, study_with({k: v for k, v in VAL_ACC.items() if k != "unit"}))
    assert [c.unit for c in run.curves] == ["%"]
    assert only_run(tmp_path, study_with(None)).curves == ()


def test_study_json_holds_the_curves_and_every_seed_gets_them(tmp_path):
    study = load_study(write_study(tmp_path, study_with([VAL_ACC, TIME])), profile="quick",
                       seeds=2)
    metas = [run.meta(study) for run in study.runs]
    assert len(metas) == 2
    for meta in metas:
        assert meta["curves"] == [
            {"metric": "val_acc", "unit": "%", "source": "000:657-666",
             "points": [[10, 93.433334], [20, 94.950005]], "note": "as printed"},
            {"metric": "epoch_time_s", "unit": "min", "source": "000:699-700",
             "points": [[1, 3.3726], [2, 3.3731]], "note": ""}]
        json.dumps(meta)  # plain JSON
    plain = load_study(write_study(tmp_path, study_with(None)), profile="quick")
    assert plain.runs[0].meta(plain)["curves"] == []


@pytest.mark.parametrize("curves, message", [
    ("93.4", "must be a list of mappings"),
    ([VAL_ACC, [10, 93.4]], "curves\\[1\\] must be a mapping"),
    ([dict(VAL_ACC, metric="test_acc")], "metric must be one of train_acc, val_acc"),
    ([{k: v for k, v in VAL_ACC.items() if k != "metric"}], "metric must be one of"),
    ([dict(VAL_ACC, page=3)], "unknown key\\(s\\) page"),
    ([dict(VAL_ACC, unit="fraction")], "accuracies are in percent as printed"),
    ([dict(VAL_ACC, points=[[10, 0.934], [20, 93.4e1]])], "epoch 20: an accuracy is in percent"),
    ([{k: v for k, v in TIME.items() if k != "unit"}], "a time needs its unit as printed"),
    ([dict(TIME, unit="minutes")], "a time needs its unit as printed, one of s, min, h"),
    ([dict(LOSS, unit="sum")], "a loss is as printed and has no unit"),
    ([dict(LOSS, points=[[1, -2.0]])], "must not be negative"),
    ([{k: v for k, v in VAL_ACC.items() if k != "source"}], "source must be the quoted lines"),
    ([dict(VAL_ACC, source=657)], "source must be the quoted lines"),
    ([dict(VAL_ACC, source="000:666-657")], "source must be the quoted lines"),
    ([dict(VAL_ACC, points=[])], "points must be a non-empty list"),
    ([dict(VAL_ACC, points={10: 93.4})], "points must be a non-empty list"),
    ([dict(VAL_ACC, points=[[10, "93.4%"]])], "each point must be \\[epoch, value\\]"),
    ([dict(VAL_ACC, points=[[10.5, 93.4]])], "each point must be \\[epoch, value\\]"),
    ([dict(VAL_ACC, points=[[0, 93.4]])], "each point must be \\[epoch, value\\]"),
    ([dict(VAL_ACC, points=[[10, 93.4, 1]])], "each point must be \\[epoch, value\\]"),
    ([dict(VAL_ACC, points=[[10, True]])], "each point must be \\[epoch, value\\]"),
    ([dict(VAL_ACC, points=[[20, 93.4], [10, 94.9]])], "epochs must increase"),
    ([dict(VAL_ACC, points=[[10, 93.4], [10, 94.9]])], "epochs must increase"),
    ([dict(VAL_ACC, note=["a"])], "note must be text"),
])
def test_curve_mistakes_are_one_line_user_errors_naming_study_and_run(tmp_path, curves,
                                                                     message):
    with pytest.raises(UserError, match=message) as caught:
        only_run(tmp_path, study_with(curves, name="alexnet"))
    text = str(caught.value)
    assert "\n" not in text
    assert "tiny.yaml" in text and "runs[0] (run alexnet): curves" in text  # says where


# --------------------------------------------------------------------------- the transcriptions

# The word a report prints before each kind of number on an epoch's line.
_WORDS = {"train_acc": r"acc", "val_acc": r"acc", "train_loss": r"loss", "val_loss": r"loss",
          "epoch_time_s": r"time|cost"}
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE]-?\d+)?")


def _files() -> dict[str, list[str]]:
    return {p.name[:3]: p.read_text().splitlines() for p in SEEDS.glob("00*.txt")}


def _epoch_line(lines: list[str], epoch: int) -> list[int]:
    """Indices of the lines that print epoch ``epoch`` ("Epoch10", "epoch 10:", "Epoch [10/").
    """
    pattern = re.compile(rf"\bepoch\s*[\[:#]?\s*{epoch}(?!\d)", re.IGNORECASE)
    return [i for i, text in enumerate(lines) if pattern.search(text)]


def printed(text: str, value: float, metric: str) -> bool:
    """``value`` is printed on ``text`` exactly (trailing zeros aside), after its metric's word
    ("valid accuracy 93.433334%", "loss 2.812075", "time cost 0.0222min")."""
    for match in _NUMBER.finditer(text):
        if float(match.group()) == value and re.search(
                _WORDS[metric], text[max(0, match.start() - 25):match.start()], re.IGNORECASE):
            return True
    return False


def shipped_curves():
    for name, _ in list_studies():
        study = load_study(name, dataset="cifar10_jpeg" if "cifar" in name or "alexnet" in name
                           else None)
        seen = set()
        for run in study.runs:
            if run.base in seen:
                continue
            seen.add(run.base)
            for curve in run.curves:
                yield name, run, curve


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the lab reports (../shared/seeds) are not here")
def test_every_transcribed_value_is_printed_on_its_source_lines():
    """Each point of a shipped curve is printed, exactly, on a line of its source range that
    names its epoch, after the word of its metric."""
    files = _files()
    checked = 0
    for name, run, curve in shipped_curves():
        number, lines = curve.source.split(":")
        low, _, high = lines.partition("-")
        first, last = int(low), int(high or low)
        text = files[number][first - 1:last]
        assert len(curve.points) <= len(text), f"{name}/{run.name}: {curve.source}"
        for epoch, value in curve.points:
            where = [first + i for i in _epoch_line(text, epoch)]
            assert where, f"{name}/{run.name}: no line of {curve.source} prints epoch {epoch}"
            assert any(printed(files[number][i - 1], value, curve.metric) for i in where), (
                f"{name}/{run.name}: {curve.metric} {value} of epoch {epoch} is not printed on "
                f"{number}:{where}: {[files[number][i - 1] for i in where]}")
            checked += 1
    assert checked >= 150


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the lab reports (../shared/seeds) are not here")
def test_report_000s_every_epoch_line_is_transcribed_under_the_network_it_trained():
    """Every `EpochN loss .. valid accuracy ..% time cost ..min` line of report 000 is in a
    curve of mnist-classics, under the run of the network named on the block's `Model:` line
    (the study's model_aliases: LeNet, AlexNet, ResNet, MobileNet)."""
    lines = _files()["000"]
    study = load_study("mnist-classics")
    by_line: dict[int, list] = {}
    for run in study.runs:
        for curve in run.curves:
            assert curve.source.startswith("000:")
            first, last = (int(x) for x in curve.source[4:].split("-"))
            for i in range(first, last + 1):
                by_line.setdefault(i, []).append((run, curve))
    epoch_lines = [i + 1 for i, text in enumerate(lines)
                   if re.match(r"Epoch(\d+) loss ([\d.]+) valid accuracy", text)]
    assert len(epoch_lines) == 50
    aliases = {"LeNet": "lenet5_classics", "AlexNet": "alexnet_classics",
               "ResNet": "resnet34_classics", "MobileNet": "mobilenet_v2_classics"}
    for n in epoch_lines:
        text = lines[n - 1]
        epoch, loss, acc, minutes = re.search(
            r"Epoch(\d+) loss ([\d.]+) valid accuracy ([\d.]+)% time cost ([\d.]+)min",
            text).groups()
        model = next(re.match(r"Model: (\w+)", lines[i - 1])[1] for i in range(n, 0, -1)
                     if lines[i - 1].startswith("Model: "))
        owners = by_line.get(n, [])
        assert {run.options["model"] for run, _ in owners} == {aliases[model]}, (n, model)
        got = {c.metric: dict(c.points).get(int(epoch)) for _, c in owners}
        assert got == {"val_acc": float(acc), "train_loss": float(loss),
                       "epoch_time_s": float(minutes)}, (n, text)
