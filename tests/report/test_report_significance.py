"""The section "Are the differences real?": McNemar's exact test on planted predictions,
Holm-corrected over the pairs of a study, only between runs of the same comparability class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnbench.report import write_report
from cnnbench.report.records import group_runs, load_runs
from cnnbench.report.significance import pair_tests, first_seed
from report_fixtures import write_fake_run

N = 1000
SHARED = set(range(100, 110))  # images every planted run gets wrong


def planted(wrong: set[int], n: int = N, shift: int = 0) -> tuple[list[int], list[int]]:
    targets = [(i + shift) % 10 for i in range(n)]
    return [(t + 1) % 10 if i in wrong else t for i, t in enumerate(targets)], targets


def run(root: Path, name: str, wrong: set[int], *, profile: str = "full", limited: bool = False,
        seed: int = 0, seed_index: int | None = 0, base: str | None = None, position: int = 0,
        shift: int = 0, predictions: bool = True) -> Path:
    """A finished fake run of study ``demo`` whose test predictions are wrong on ``wrong``."""
    d = write_fake_run(root / name, profile=profile, limited=limited, seed=seed,
                       predictions=planted(wrong, shift=shift) if predictions else None)
    meta = {"study": "demo", "run": base or name, "name": name, "profile": profile,
            "seed": seed, "position": position, "options": {}, "recipe": {}, "reference": []}
    if seed_index is not None:
        meta["seed_index"] = seed_index
    (d / "study.json").write_text(json.dumps(meta))
    return d


def section(md: str) -> str:
    return md.split("### Are the differences real?")[1].split("\n### ")[0]


def rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The pair table's rows by (run A, run B)."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 9 and cells[0] not in ("run A", "---"):
            out[(cells[0], cells[1])] = cells[2:]
    return out


@pytest.fixture
def four(tmp_path) -> Path:
    """sharp (98.80 %), near (98.00 %: 10 images sharp gets right, 2 it gets wrong), weak
    (92.00 %) and twin (98.80 %, as sharp but on other images): six pairs on one test set."""
    run(tmp_path, "sharp", SHARED | {0, 1}, position=0)
    run(tmp_path, "near", SHARED | set(range(10, 20)), position=1)
    run(tmp_path, "weak", set(range(200, 280)), position=2)
    run(tmp_path, "twin", SHARED | {2, 3}, position=3)
    return tmp_path


def test_a_clear_winner_a_tie_and_the_holm_correction(four):
    text = section(write_report([four], figures=False).markdown.read_text())
    assert ("| run A | run B | acc A (%) | acc B (%) | b (A right, B wrong) | c (A wrong, B right) "
            "| p | Holm p | verdict |") in text
    table = rows(text)
    assert len(table) == 6  # every pair of four runs, once
    assert table[("sharp", "weak")] == ["98.80", "92.00", "80", "12", "< 0.001", "< 0.001",
                                        "sharp better"]
    assert table[("weak", "twin")][2:4] == ["12", "80"]
    assert table[("weak", "twin")][-1] == "twin better"
    # sharp vs near: p = 0.0386 alone, but the third smallest of six p-values: Holm x3
    assert table[("sharp", "near")] == ["98.80", "98.00", "10", "2", "0.039", "0.12",
                                        "not distinguishable"]
    assert table[("sharp", "twin")] == ["98.80", "98.80", "2", "2", "1.00", "1.00",
                                        "not distinguishable"]
    assert ("- sharp beats weak: 98.80 vs 92.00 %, p < 0.001 (McNemar exact, Holm over 6 pairs)."
            in text)
    assert "- twin beats weak: 98.80 vs 92.00 %, p < 0.001" in text
    assert ("- sharp and near are not distinguishable on this test set (98.80 vs 98.00 %, "
            "Holm p = 0.12).") in text
    assert ("- sharp and twin are not distinguishable on this test set (98.80 vs 98.80 %, "
            "Holm p = 1.00).") in text
    assert "no pairs share a test set" not in text
    assert "Capped runs" not in text


def test_capped_runs_are_never_paired_with_full_ones(tmp_path):
    run(tmp_path, "full-a", SHARED, position=0)
    run(tmp_path, "full-b", set(range(200, 280)), position=1)
    run(tmp_path, "quick-a", set(range(300, 400)), profile="quick", limited=True, position=2)
    run(tmp_path, "quick-b", SHARED | {0}, profile="quick", limited=True, position=3)
    run(tmp_path, "cpu-a", SHARED, profile="cpu", limited=True, position=4)
    run(tmp_path, "subset", SHARED, limited=True, position=5)  # full profile, fewer images
    groups = group_runs(load_runs([tmp_path]))
    by_class = pair_tests(groups)
    pairs = {cls: [(t.a.label, t.b.label) for t in tests] for cls, tests in by_class.items()}
    assert pairs == {"": [("full-a", "full-b")], "quick": [("quick-a", "quick-b")]}
    assert all(t.pairs == 1 for tests in by_class.values() for t in tests)  # Holm per class
    text = section(write_report([tmp_path], figures=False).markdown.read_text())
    main, capped = text.split("#### Capped runs (quick) — not the report's recipe")
    assert set(rows(main)) == {("full-a", "full-b")}
    assert set(rows(capped)) == {("quick-a", "quick-b")}
    assert "quick-b beats quick-a" in capped and "(McNemar exact, Holm over 1 pair)" in capped
    for label in ("cpu-a", "subset"):  # alone in their class: no pair at all
        assert label not in text


def test_only_runs_on_the_same_test_images_are_paired(tmp_path):
    run(tmp_path, "mnist", SHARED, position=0)
    run(tmp_path, "other", SHARED, position=1, shift=3)  # other targets: another test set
    run(tmp_path, "unsaved", SHARED, position=2, predictions=False)
    text = section(write_report([tmp_path], figures=False).markdown.read_text())
    assert "no pairs share a test set" in text and not rows(text)
    assert "Not tested (finished without `test_predictions.json`): unsaved." in text


def test_several_seeds_test_the_first_seed_and_say_so(tmp_path):
    # seed_index 1 is perfect, seed_index 0 as poor as the other run: the first seed is tested
    run(tmp_path, "net-seed7", set(), seed=7, seed_index=1, base="net", position=0)
    run(tmp_path, "net-seed3", set(range(200, 280)), seed=3, seed_index=0, base="net", position=0)
    run(tmp_path, "other", set(range(200, 280)), position=1)
    groups = group_runs(load_runs([tmp_path]))
    assert first_seed(groups[0]).path.name == "net-seed3"
    text = section(write_report([tmp_path], figures=False).markdown.read_text())
    assert "each run is tested with its first seed's predictions" in text
    assert rows(text)[("net", "other")] == ["92.00", "92.00", "0", "0", "1.00", "1.00",
                                            "not distinguishable"]
    # without seed_index (runs made outside a study): the lowest seed
    for d in ("net-seed7", "net-seed3"):
        meta = json.loads((tmp_path / d / "study.json").read_text())
        del meta["seed_index"]
        (tmp_path / d / "study.json").write_text(json.dumps(meta))
    groups = group_runs(load_runs([tmp_path]))
    assert first_seed(groups[0]).path.name == "net-seed3"


def test_runs_on_other_images_with_the_same_labels_are_not_paired(tmp_path):
    """cifar10 and cifar10_jpeg share their labels, not their images."""
    for name, digest in (("official", "aaaa"), ("jpeg", "bbbb"), ("official-2", "aaaa")):
        d = run(tmp_path, name, set(range(0, 40)))
        summary = json.loads((d / "summary.json").read_text())
        summary["data"] = {"test_sha256": digest}
        (d / "summary.json").write_text(json.dumps(summary))
    tests = pair_tests(group_runs(load_runs([tmp_path])))
    assert [(t.a.group.label, t.b.group.label) for t in tests[""]] == [("official", "official-2")]
