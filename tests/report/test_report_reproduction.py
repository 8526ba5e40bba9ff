"""The reproduction table: every published number beside cnnbench's, and a difference only
where the run followed the report's recipe and the quantity is comparable."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from cnnbench.report import records
from cnnbench.report import reproduction, tables, write_report
from cnnbench.report.records import group_runs, load_runs
from cnnbench.reference_metrics import REFERENCE_METRICS
from report_fixtures import write_fake_run

DIFFERS = "no ImageNet-pretrained weights offline: continues from the from-scratch run"
REFERENCES = [
    {"metric": "test_acc", "value": 97.02, "wording": "Test loss 1.960664 acc 97.0200%",
     "source": "000:797", "comparable": True},
    {"metric": "test_loss", "value": 1.960664, "comparable": False,
     "note": "the report's loss is summed over batches"},
]


OPTIONS = {"model": "lenet5", "dataset": "mnist", "epochs": 3, "lr": 1e-3}  # on the recipe


def study_run(root: Path, name: str, *, profile: str = "full", limited: bool = False,
              reference=None, differs: str | None = None, position: int = 0,
              step_index: int | None = None, test_acc: float = 0.97, run: str | None = None,
              **fake) -> Path:
    """A study's run in ``root / name``; ``run``: the study's name for it (its seeds share one)."""
    folder = write_fake_run(root / name, profile=profile, limited=limited, test_acc=test_acc, **fake)
    meta = {"study": "demo", "run": run or name, "name": run or name, "profile": profile,
            "reference": REFERENCES if reference is None else reference, "differs": differs,
            "position": position, "options": dict(OPTIONS), "recipe": dict(OPTIONS)}
    if step_index is not None:
        meta.update(step=f"step {step_index}", step_index=step_index, ablation="demo")
    (folder / "study.json").write_text(json.dumps(meta))
    return folder


def groups_of(root: Path):
    return group_runs(load_runs([root]))


def rows_by_run(items) -> dict[tuple[str, str], reproduction.Reproduction]:
    return {(item.group.label, item.ref["metric"]): item for item in items}


@pytest.fixture
def recipes(tmp_path) -> Path:
    """One run per way of (not) following the report's recipe, each with two references."""
    study_run(tmp_path, "full", position=0)
    study_run(tmp_path, "cpu", profile="cpu", limited=True, position=1)
    study_run(tmp_path, "quick", profile="quick", limited=True, position=2)
    study_run(tmp_path, "pretrained", differs=DIFFERS, position=3)
    study_run(tmp_path, "subset", limited=True, position=4)
    return tmp_path


def test_a_difference_only_on_the_full_recipe_and_for_comparable_quantities(recipes):
    items = rows_by_run(reproduction.reproductions(groups_of(recipes)))
    full = items[("full", "test_acc")]
    assert full.difference == pytest.approx(-0.02) and full.verdict == "yes"
    loss = items[("full", "test_loss")]
    assert loss.value[0] == pytest.approx(0.3) and loss.difference is None
    assert loss.verdict == "yes (not comparable: the report's loss is summed over batches)"
    why_not = {"cpu": "no: cpu profile, capped (epochs/images)",
               "quick": "no: quick smoke test",
               "pretrained": f"no: {DIFFERS}",
               "subset": "no: trained or evaluated on a subset of the images "
                         "(limit_train / limit_eval)"}
    for run, verdict in why_not.items():
        for metric in ("test_acc", "test_loss"):
            item = items[(run, metric)]
            assert item.difference is None, (run, metric)
            assert item.verdict == verdict and not item.on_recipe
            assert item.value is not None  # both numbers are still shown


def test_the_tables_put_the_reports_recipe_first(recipes):
    md = write_report([recipes], figures=False).markdown.read_text()
    section = md.split("### Reproduction")[1].split("\n### ")[0]
    on_recipe, off_recipe = section.split("#### Runs not on the report's recipe — not comparable")
    header = ("| run | quantity | report | cnnbench | difference | report in cnnbench's 95% CI? | "
              "profile | same recipe? |")
    assert header in on_recipe and header in off_recipe
    lines = [line for line in on_recipe.splitlines() if line.startswith("| full |")]
    assert lines == [
        "| full | test acc | 97.02 % [1] | 97.00 % | -0.02 pp | inside | full | yes |",
        "| full | test loss | 1.960664 [2] | 0.3 | — | — | full | yes (not comparable: the report's "
        "loss is summed over batches) |"]
    assert "| cpu |" not in on_recipe and "| quick |" not in on_recipe
    assert ("| cpu | test acc | 97.02 % [3] | 97.00 % | — | — | cpu, limited | no: cpu profile, capped "
            "(epochs/images) |") in off_recipe
    assert f"| pretrained | test acc | 97.02 % [3] | 97.00 % | — | — | full | no: {DIFFERS} |" in off_recipe
    # the footnote says where the number is and how the report worded it, once for the runs
    # that share it
    assert ('[1] **full**, test acc: report 97.02 % ("Test loss 1.960664 acc 97.0200%") in lab '
            "report 000, line 797 (`../shared/seeds/000_*.txt`).") in on_recipe
    assert "- [3] **cpu, quick, pretrained, subset**, test acc: report 97.02 %" in off_recipe
    assert "[4] **cpu, quick, pretrained, subset**, test loss: report 1.960664 — the report's" in off_recipe


def test_without_a_run_on_the_recipe_the_report_says_so(tmp_path):
    study_run(tmp_path, "quick", profile="quick", limited=True)
    md = write_report([tmp_path], figures=False).markdown.read_text()
    assert "No run followed the report's recipe, so no difference is computed" in md


def test_val_acc_is_the_last_epochs_not_the_best(tmp_path):
    run = study_run(tmp_path, "a", reference=[{"metric": "val_acc", "value": 90.0},
                                               {"metric": "best_val_acc", "value": 90.0},
                                               {"metric": "train_acc", "value": 90.0},
                                               {"metric": "val_loss", "value": 0.2}])
    epochs = [{"epoch": 1, "train_acc": 0.80, "val_acc": 0.85, "val_loss": 0.5},
              {"epoch": 2, "train_acc": 0.90, "val_acc": 0.93, "val_loss": 0.3},
              {"epoch": 3, "train_acc": 0.95, "val_acc": 0.91, "val_loss": 0.4}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "best_val_acc": 0.93}))
    items = rows_by_run(reproduction.reproductions(groups_of(tmp_path)))
    assert items[("a", "val_acc")].value[0] == pytest.approx(91.0)  # the last epoch, not 93
    assert items[("a", "val_acc")].difference == pytest.approx(1.0)
    assert items[("a", "val_acc")].label == "val acc (last epoch)"
    assert items[("a", "best_val_acc")].value[0] == pytest.approx(93.0)
    assert items[("a", "train_acc")].value[0] == pytest.approx(95.0)
    assert items[("a", "val_loss")].value[0] == pytest.approx(0.4)


def test_time_references_are_converted_from_their_unit(tmp_path):
    run = study_run(tmp_path, "a", reference=[
        {"metric": "epoch_time_s", "value": 0.5, "unit": "min", "comparable": True},
        {"metric": "train_time_s", "value": 2, "unit": "h"},
        {"metric": "train_time_s", "value": 20}])  # no unit: seconds
    epochs = [{"epoch": e, "epoch_time_s": t} for e, t in ((1, 28.0), (2, 32.0), (3, 36.0))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    items = reproduction.reproductions(groups_of(tmp_path))
    epoch, hours, seconds = items
    assert records.reference_value(epoch.ref) == pytest.approx(30.0)
    assert epoch.value[0] == pytest.approx(32.0)  # the mean over the epochs
    assert epoch.difference == pytest.approx(2.0)  # comparable: the study file says so
    assert records.reference_value(hours.ref) == pytest.approx(7200.0) and hours.difference is None
    assert records.reference_value(seconds.ref) == pytest.approx(20.0)
    # a range is converted at both ends; only a time is converted
    assert records.reference_value({"kind": "time", "unit": "min", "value": [1, 2.5]}) == (60.0, 150.0)
    assert records.reference_value({"kind": "accuracy", "unit": "%", "value": [90, 92]}) == (90.0, 92.0)
    assert records.mean_std([0.5]) == (0.5, 0.0) and records.mean_std([None]) is None
    assert records.mean_std([1.0, None, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert reproduction.reference_cell(epoch.ref) == "30.0 s (0.5 min)"
    assert reproduction.reference_cell(hours.ref) == "2.00 h (2 h)"
    assert reproduction.reference_cell(seconds.ref) == "20.0 s"
    assert reproduction.difference_text("time", epoch.difference, 30.0) == "+2.00 s"


def test_counts_and_ranges(tmp_path):
    study_run(tmp_path, "a", test_acc=0.66, reference=[{"metric": "params", "value": 60000},
                                                        {"metric": "test_acc", "value": [64, 68]}])
    params, acc = reproduction.reproductions(groups_of(tmp_path))
    assert params.difference == pytest.approx(1706)  # the fixture's 61,706
    assert reproduction.difference_text("count", params.difference, 60000) == "+1.71k (+2.8 %)"
    assert reproduction.reference_cell(params.ref) == "60,000"
    assert acc.difference == 0.0  # inside the published range
    assert reproduction.reference_cell(acc.ref) == "64–68 %"
    # the table's difference column: the count's difference also relative to the report's count
    [(_, (header, rows), _)] = reproduction.reproduction_tables([params, acc])
    column = header.index("difference")
    assert [row[column] for row in rows] == ["+1.71k (+2.8 %)", "+0.00 pp"]


def test_max_epoch_test_acc_is_labelled_and_shown_beside_the_honest_test_acc(tmp_path):
    ref = [{"metric": "max_epoch_test_acc", "value": 97.5}]
    study_run(tmp_path, "monitored", reference=ref, monitor_test=True, test_acc=0.97)
    study_run(tmp_path, "plain", reference=ref, position=1, test_acc=0.97)
    md = write_report([tmp_path], figures=False).markdown.read_text()
    label = ("best test acc over epochs (the report's measure; the test set picks the epoch, "
             "optimistic)")
    assert (f"| monitored | {label} | 97.5 % | 97.50 % (test acc 97.00 %: best-validation "
            "weights, nothing selected on the test set) | +0.00 pp | inside | full | yes |") in md
    assert (f"| plain | {label} | 97.5 % | — (the run did not evaluate the test set every "
            "epoch: monitor_test) (test acc 97.00 %: best-validation weights, nothing selected "
            "on the test set) | — | — | full | yes |") in md
    # without a validation split (as the CIFAR reports trained) the final weights are tested
    final = study_run(tmp_path / "final", "final", reference=ref, monitor_test=True)
    summary = json.loads((final / "summary.json").read_text())
    (final / "summary.json").write_text(json.dumps(dict(summary, tested_weights="final")))
    md = write_report([tmp_path / "final"], figures=False).markdown.read_text()
    assert "(test acc 97.00 %: final weights (no validation split), nothing selected" in md


def test_a_test_accuracy_of_the_last_weights_says_so_and_gives_the_best_ones(tmp_path):
    """As a lab report tested (its last epoch's weights): the test accuracy's cell says so and
    gives the best-validation weights' test accuracy beside it; other quantities' cells do not."""
    refs = [{"metric": "test_acc", "value": 97.0}, {"metric": "val_acc", "value": 96.0}]
    for name, best in (("with-best", 0.973), ("without", None)):
        run = study_run(tmp_path / name, name, reference=refs)
        summary = json.loads((run / "summary.json").read_text())
        summary.update(tested_weights="last", best_val_test_acc=best)
        (run / "summary.json").write_text(json.dumps(summary))
    cells = {}
    for name in ("with-best", "without"):
        for item in reproduction.reproductions(groups_of(tmp_path / name)):
            cells[(name, item.ref["metric"])] = reproduction._cnnbench_cell(item)
    assert cells[("with-best", "test_acc")] == ("97.00 % (last epoch's weights, as the report "
                                                "tested; best-validation weights: 97.30 %)")
    assert cells[("without", "test_acc")] == "97.00 % (last epoch's weights, as the report tested)"
    assert "weights" not in cells[("with-best", "val_acc")]


def test_older_study_json_references_a_mapping_or_null(tmp_path):
    for name, reference in (("mapping", {"value": 91.3, "metric": "test_acc", "wording": "w",
                                         "note": "n"}),
                            ("none", None), ("list", [{"value": 1.5, "metric": "test_loss"}])):
        run = write_fake_run(tmp_path / name, profile="full", limited=False)
        (run / "study.json").write_text(json.dumps({"study": "old", "run": name,
                                                    "reference": reference}))
    groups = {g.label: g for g in groups_of(tmp_path)}
    assert groups["none"].references == []
    [mapping] = groups["mapping"].references
    assert mapping["comparable"] is True and mapping["kind"] == "accuracy"
    [loss] = groups["list"].references
    assert loss["comparable"] is False and loss["kind"] == "loss"  # losses: not by default


def test_a_reproduction_row_with_two_gaps_lists_both(tmp_path):
    study_run(tmp_path, "quick", profile="quick", limited=True, differs=DIFFERS)
    with write_report([tmp_path], figures=False).reproduction_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["why_not"] for r in rows] == [f"quick smoke test; {DIFFERS}"] * 2


def test_reproduction_csv_reads_back(recipes):
    files = write_report([recipes], figures=False)
    with files.reproduction_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    assert list(rows[0]) == reproduction.REPRODUCTION_FIELDS
    full = rows[0]
    assert (full["run"], full["metric"], full["unit"], full["same_recipe"]) == (
        "full", "test_acc", "%", "True")
    assert float(full["report_low"]) == float(full["report_high"]) == pytest.approx(97.02)
    assert float(full["cnnbench"]) == pytest.approx(97.0)
    assert float(full["difference"]) == pytest.approx(-0.02) and full["difference_unit"] == "pp"
    assert full["source"] == "000:797" and full["wording"] == "Test loss 1.960664 acc 97.0200%"
    assert rows[1]["metric"] == "test_loss" and rows[1]["difference"] == ""
    assert rows[1]["report_as_printed"] == "1.960664"
    cpu = next(r for r in rows if r["run"] == "cpu" and r["metric"] == "test_acc")
    assert cpu["difference"] == "" and cpu["why_not"] == "cpu profile, capped (epochs/images)"
    assert (cpu["profile"], cpu["limited"]) == ("cpu", "True")
    with files.csv.open() as fh:  # results.csv: one row per run directory, no references
        results = list(csv.DictReader(fh))
    assert len(results) == 5 and "difference_pp" not in results[0]


def test_ablation_changes_only_between_steps_of_the_same_profile(tmp_path):
    ref = [{"metric": "val_acc", "value": 60.0}, {"metric": "test_acc", "value": [64, 68]}]
    steps = (("base", "full", False, 0.60), ("aug", "full", False, 0.65),
             ("resnet", "quick", True, 0.10), ("resnet-tuned", "quick", True, 0.12),
             ("vgg", "cpu", True, 0.50), ("vgg-tuned", "full", False, 0.70))
    for i, (name, profile, limited, acc) in enumerate(steps):
        study_run(tmp_path, name, profile=profile, limited=limited, test_acc=acc, position=i,
                  step_index=i, reference=ref if i < 2 else [])
    [(header, rows)] = tables.ablation_tables(groups_of(tmp_path)).values()
    assert header == ["#", "step", "run", "test acc (%)", "vs previous (pp)",
                      "vs baseline (pp)", "report (%)", "profile"]
    changes = {row[2]: (row[4], row[5]) for row in rows}
    assert changes == {"base": ("—", "—"), "aug": ("+5.00", "+5.00"),
                       "resnet": ("— (capped)", "— (capped)"),        # quick after full: no change
                       "resnet-tuned": ("— (capped)", "— (capped)"),  # nor quick vs quick
                       "vgg": ("— (capped)", "— (capped)"),
                       "vgg-tuned": ("— (#4 capped)", "+10.00")}  # full: vs the full base only
    # the report column: the first test-accuracy reference, not the val_acc listed before it
    assert [row[6] for row in rows[:3]] == ["64–68", "64–68", "—"]
    assert rows[2][7] == "**quick, limited**"


def test_the_report_reads_every_metric_a_study_may_quote():
    """Every metric a study file may name (cnnbench.reference_metrics) has a value in a run."""
    assert set(records.QUANTITIES) == set(REFERENCE_METRICS)


def test_every_quantity_reads_its_own_number_from_the_run_files():
    """Each reference metric is read from the right place: the last epoch (not the first) for
    val/train numbers, the mean over epochs for the epoch time, epoch 1's monitored test
    accuracy, the summary's best-over-epochs test accuracy or else the maximum of the logged
    ones; a run without the number gives None."""
    from pathlib import Path

    from cnnbench.report.records import QUANTITIES, RunRecord

    metrics = [{"epoch": e, "val_acc": 0.5 + e / 10, "train_acc": 0.4 + e / 10,
                "val_loss": 2.0 - e / 2, "train_loss": 2.5 - e / 2, "epoch_time_s": 10.0 * e,
                "epoch_test_acc": [0.61, 0.74, 0.69][e - 1]} for e in (1, 2, 3)]
    summary = {"test_acc": 0.71, "best_val_acc": 0.8, "test_loss": 0.9, "train_time_s": 60.0,
               "params": 1234}
    record = RunRecord(path=Path("run"), summary=summary, metrics=metrics, config={}, study={},
                       steps=[], error=None)
    read = {name: q.read(record) for name, q in QUANTITIES.items()}
    assert read == pytest.approx({
        "test_acc": 0.71, "val_acc": 0.8, "best_val_acc": 0.8, "max_epoch_test_acc": 0.74,
        "epoch1_test_acc": 0.61, "train_acc": 0.7, "test_loss": 0.9, "val_loss": 0.5,
        "train_loss": 1.0, "epoch_time_s": 20.0, "train_time_s": 60.0, "params": 1234})
    record.summary["max_epoch_test_acc"] = 0.75  # the run's own record wins
    assert QUANTITIES["max_epoch_test_acc"].read(record) == 0.75
    empty = RunRecord(path=Path("run"), summary={}, metrics=[{"step": 1}], config={}, study={},
                      steps=[], error=None)
    assert all(q.read(empty) is None for q in QUANTITIES.values())


def test_every_reference_quantity_reads_its_own_value(tmp_path):
    """Each metric a lab report's number can be compared with is read from the right place:
    the summary, the last epoch, the mean over epochs, or one epoch (a hand-made run whose
    every number differs)."""
    import json as json_module

    from cnnbench.report.records import QUANTITIES, RunRecord

    run = write_fake_run(tmp_path / "r", epochs=3, monitor_test=True)
    rows = [{"epoch": e, "train_acc": 0.1 * e, "val_acc": 0.2 * e, "train_loss": 3.0 - e,
             "val_loss": 4.0 - e, "epoch_time_s": 2.0 * e, "epoch_test_acc": 0.25 + 0.01 * e}
            for e in (1, 2, 3)]
    rows.insert(1, {"note": "a line without an epoch is skipped"})
    (run / "metrics.jsonl").write_text("".join(json_module.dumps(r) + "\n" for r in rows))
    summary = json_module.loads((run / "summary.json").read_text())
    summary.pop("max_epoch_test_acc")  # read from the epochs instead
    summary.update(test_acc=0.91, best_val_acc=0.93, test_loss=0.35, train_time_s=12.5, params=61706)
    (run / "summary.json").write_text(json_module.dumps(summary))
    record = RunRecord.load(run)
    got = {key: q.read(record) for key, q in QUANTITIES.items()}
    assert got == pytest.approx({
        "test_acc": 0.91, "best_val_acc": 0.93, "test_loss": 0.35, "train_time_s": 12.5,
        "params": 61706, "val_acc": 0.6, "train_acc": 0.3, "val_loss": 1.0, "train_loss": 0.0,
        "epoch_time_s": 4.0, "epoch1_test_acc": 0.26, "max_epoch_test_acc": 0.28})
    (run / "metrics.jsonl").write_text("")
    empty = RunRecord.load(run)
    assert QUANTITIES["val_acc"].read(empty) is None and QUANTITIES["epoch_time_s"].read(empty) is None
    assert QUANTITIES["epoch1_test_acc"].read(empty) is None


def test_a_full_run_limited_only_by_its_own_recipe_is_not_capped(tmp_path):
    """transfer's full recipe trains on a subset: that is the recipe, not a cap, but only when
    both limits are the recipe's; a malformed study record counts as no recipe."""
    import json as json_module

    from cnnbench.report.records import RunRecord, _limits_are_the_recipes

    run = write_fake_run(tmp_path / "r", profile="full")
    recipe = {"limit_train": 5000, "limit_eval": 1000}

    def record(options, recipe=recipe):
        (run / "study.json").write_text(json_module.dumps(
            {"study": "transfer", "profile": "full", "recipe": recipe, "options": options}))
        return RunRecord.load(run)

    assert _limits_are_the_recipes(record(dict(recipe))) is True
    assert _limits_are_the_recipes(record({"limit_train": 5000, "limit_eval": 200})) is False
    assert _limits_are_the_recipes(record({"limit_train": 500, "limit_eval": 1000})) is False
    assert _limits_are_the_recipes(record("not a mapping")) is False
    assert _limits_are_the_recipes(record(dict(recipe), recipe=None)) is False


def test_the_tables_rows_cells_and_footnotes_before_any_markdown(recipes, tmp_path):
    """reproduction_tables itself (the markdown test above goes through the whole report):
    every cell of a row, the footnotes shared by the runs that quote the same number, a
    failed run's cell, several seeds' spread, and the text of each kind of quantity."""
    tables = reproduction.reproduction_tables(reproduction.reproductions(groups_of(recipes)))
    assert [which for which, _, _ in tables] == ["on the report's recipe", "not on the report's recipe"]
    (_, (header, rows), notes), (_, (_, off_rows), off_notes) = tables
    assert header[:5] == ["run", "quantity", "report", "cnnbench", "difference"]
    assert rows == [
        ["full", "test acc", "97.02 % [1]", "97.00 %", "-0.02 pp", "inside", "full", "yes"],
        ["full", "test loss", "1.960664 [2]", "0.3", "—", "—", "full",
         "yes (not comparable: the report's loss is summed over batches)"]]
    assert notes == [
        '[1] **full**, test acc: report 97.02 % ("Test loss 1.960664 acc 97.0200%") in lab report '
        "000, line 797 (`../shared/seeds/000_*.txt`).",
        "[2] **full**, test loss: report 1.960664 — the report's loss is summed over batches."]
    assert [row[0] for row in off_rows] == ["cpu", "cpu", "quick", "quick", "pretrained",
                                            "pretrained", "subset", "subset"]
    assert {row[2] for row in off_rows} == {"97.02 % [3]", "1.960664 [4]"}  # numbered on
    assert [n.split(":")[0] for n in off_notes] == ["[3] **cpu, quick, pretrained, subset**, test acc",
                                                    "[4] **cpu, quick, pretrained, subset**, test loss"]

    # a failed run and a group of two seeds
    root = tmp_path / "more"
    study_run(root, "broken", status="failed",  # a wording alone is a footnote too
              reference=[{"metric": "test_acc", "value": 90.0, "wording": "acc 90%"}])
    study_run(root, "gpu", position=2,  # a note ending in a letter keeps it (a GPU's name)
              reference=[{"metric": "test_acc", "value": 92.0, "note": "GeForce 940MX"}])
    for seed, acc in ((0, 0.96), (1, 0.98)):
        study_run(root / f"s{seed}", "seeds", seed=seed, test_acc=acc, position=1,
                  reference=[{"metric": "test_acc", "value": 97.0, "comparable": True,
                              "note": "the mean of its table."}])
    tables = reproduction.reproduction_tables(reproduction.reproductions(groups_of(root)))
    cells = {row[0]: row[3] for _, (_, rows), _ in tables for row in rows}
    assert cells["broken"] == "**FAILED**"
    notes = [n for *_, notes in tables for n in notes]
    assert '[1] **broken**, test acc: report 90 % ("acc 90%").' in notes
    assert "[2] **seeds**, test acc: report 97 % — the mean of its table." in notes  # one period
    assert "[3] **gpu**, test acc: report 92 % — GeForce 940MX." in notes
    assert cells["seeds"] == "97.00 ± 1.41 %"
    assert reproduction.quantity_text("accuracy", 97.0) == "97.00 %"
    assert reproduction.quantity_text("accuracy", 97.0, 1.414, n=2) == "97.00 ± 1.41 %"
    assert reproduction.quantity_text("count", 44426.4) == "44,426"
    assert reproduction.quantity_text("count", 44426.4, 3.0, n=3) == "44,426"
    assert reproduction.quantity_text("loss", 0.123456) == "0.1235"
    assert reproduction.quantity_text("loss", 0.123456, 0.0123, n=2) == "0.1235 ± 0.012"
    assert reproduction.quantity_text("time", 90.0) == reproduction.duration(90.0)
    assert reproduction.quantity_text("time", 90.0, 5.0, n=2) == (
        f"{reproduction.duration(90.0)} ± {reproduction.duration(5.0)}")
    assert reproduction.quantity_text("accuracy", None) == "—"


def test_differences_and_published_numbers_in_table_units():
    """The sign of every kind of difference, a count's percentage of the published number
    (of a range: its low end; none of a published 0), and a published number's own text."""
    text = reproduction.difference_text
    assert text("accuracy", -0.5, 97.0) == "-0.50 pp" and text("accuracy", 0.0, 97.0) == "+0.00 pp"
    assert text("time", -2.0, 30.0) == "-2.00 s" and text("time", 0.0, 30.0) == "+0.00 s"
    assert text("count", -1706, 60000) == "-1.71k (-2.8 %)"
    assert text("count", 0, 60000) == "0" and text("count", 1, 60000) == "+1 (+0.0 %)"
    assert text("count", 500, (1000, 2000)) == "+500 (+50.0 %)"  # of the range's low end
    assert text("count", 5, 0) == "+5"
    assert text("loss", -0.0123, 1.0) == "-0.0123" and text("loss", None, 1.0) == "—"
    cell = reproduction.reference_cell
    assert cell({"kind": "time", "value": 20, "unit": None}) == "20.0 s"  # no unit: seconds
    assert cell({"kind": "loss", "value": 1.5}) == "1.5"
    assert cell({"kind": "loss", "value": [1.25, 1.5]}) == "1.25–1.5"


def test_choices_are_noted_once_for_the_runs_they_concern(tmp_path):
    """A choice the report did not make is one line, once for every run that shares it (in
    whatever order the study file wrote its keys), ending in one full stop; an entry
    without ``what`` is no choice."""
    choice = {"what": "the seed", "cnnbench": "seeds 0-2", "report": "one run", "source": "000:797"}
    split = {"what": "the split", "cnnbench": "a seeded 54k/6k split", "report": "the first 54k."}
    device = {"what": "the device", "cnnbench": "a CPU", "report": "a GeForce 940MX"}  # ends in X
    same_reordered = dict(reversed(list(choice.items())))
    for name, choices in (("a", [choice, split, device, {"cnnbench": "no what"}]), ("b", [same_reordered])):
        run = study_run(tmp_path / name, name, position=ord(name))
        meta = json.loads((run / "study.json").read_text())
        (run / "study.json").write_text(json.dumps(dict(meta, choices=choices)))
    groups = groups_of(tmp_path)
    assert [len(reproduction.run_choices(g)) for g in groups] == [3, 1]
    assert reproduction.choice_notes(groups) == [
        "cnnbench's choice, **the seed** (a, b): seeds 0-2; the report: one run (lab report 000, "
        "line 797 (`../shared/seeds/000_*.txt`)).",
        "cnnbench's choice, **the split** (a): a seeded 54k/6k split; the report: the first 54k.",
        "cnnbench's choice, **the device** (a): a CPU; the report: a GeForce 940MX."]


def test_the_best_weights_accuracy_beside_last_weights_has_its_spread_over_seeds():
    from types import SimpleNamespace

    seeds = [SimpleNamespace(summary={"tested_weights": "last"})] * 2
    group = SimpleNamespace(finished=seeds, stat=lambda key: (0.973, 0.0012))
    assert reproduction.tested_text(group) == (" (last epoch's weights, as the report tested; "
                                               "best-validation weights: 97.30 ± 0.12 %)")


def test_the_best_test_accuracy_over_epochs_cell_names_the_weights_the_run_tested():
    """The report's optimistic measure (the test set picks the epoch) is always shown beside the
    run's honest test accuracy and the weights it was of; a run without the test monitor has no
    such measure."""
    from types import SimpleNamespace

    def cell(tested: list[str], value, metric="max_epoch_test_acc", test_acc=(0.97, 0.001)):
        group = SimpleNamespace(finished=[SimpleNamespace(summary={"tested_weights": w}) for w in tested],
                                status="finished", test_acc=test_acc)
        return reproduction._cnnbench_cell(SimpleNamespace(group=group, value=value, kind="accuracy",
                                                           ref={"metric": metric}))

    honest = ", nothing selected on the test set)"
    assert cell(["best"], (97.5, 0.0)) == f"97.50 % (test acc 97.00 %: best-validation weights{honest}"
    assert cell(["final", "final"], (97.5, 0.1)) == (
        f"97.50 ± 0.10 % (test acc 97.00 ± 0.10 %: final weights (no validation split){honest}")
    assert cell(["last"], (97.5, 0.0)).endswith(f"(test acc 97.00 %: last epoch's weights{honest}")
    assert cell(["best", "last"], (97.5, 0.1)).endswith(f": selected weights{honest}")
    assert cell(["best"], None) == ("— (the run did not evaluate the test set every epoch: "
                                    f"monitor_test) (test acc 97.00 %: best-validation weights{honest}")
    assert cell(["best"], (97.5, 0.0), test_acc=None) == "97.50 %"  # no test accuracy to show
    assert cell(["best"], None, metric="val_acc") == "—"


@pytest.mark.parametrize("value, where", [(98.0, "inside"), (96.0, "inside"), ([98.0, 99.0], "inside"),
                                          ([95.0, 96.0], "inside"), (98.01, "outside (above)"),
                                          ([94.0, 95.99], "outside (below)")])
def test_a_report_number_at_the_edge_of_the_interval_is_inside(monkeypatch, value, where):
    from types import SimpleNamespace

    monkeypatch.setattr(reproduction, "cnnbench_interval", lambda item: (96.0, 98.0))
    item = SimpleNamespace(difference=0.0, ref={"kind": "accuracy", "value": value})
    assert reproduction.interval_position(item) == where


def test_reproduction_csv_gives_a_ranges_ends_and_no_unit_where_a_quantity_has_none(tmp_path):
    """A reference given as a range ([64, 68]) is its two ends, printed with a plain hyphen; a
    loss has no unit (an empty field); a time printed in minutes is shown with its unit and
    compared in seconds."""
    ref = [{"metric": "test_acc", "value": [64, 68]}, {"metric": "test_loss", "value": 1.5},
           {"metric": "train_time_s", "value": 12.5, "unit": "min"}]
    study_run(tmp_path, "base", position=0, reference=ref)
    files = write_report([tmp_path], figures=False)
    with files.reproduction_csv.open() as fh:
        rows = {row["metric"]: row for row in csv.DictReader(fh)}
    acc, loss = rows["test_acc"], rows["test_loss"]
    assert (float(acc["report_low"]), float(acc["report_high"])) == (64.0, 68.0)
    assert acc["report_as_printed"] == "64-68" and acc["unit"] == "%"
    assert loss["unit"] == "" and loss["report_low"] == loss["report_high"] == "1.5"
    assert loss["report_as_printed"] == "1.5"
    time = rows["train_time_s"]
    assert time["report_as_printed"] == "12.5 min" and time["unit"] == "s"
    assert float(time["report_low"]) == float(time["report_high"]) == 750.0


def test_reproduction_csv_row_of_several_seeds_holds_each_number_to_six_decimals(tmp_path):
    """One row of reproduction.csv, every field: the seeds' mean and standard deviation in
    percent, their t interval, the difference to the report and the reference's own fields,
    each number rounded to 6 decimals."""
    from scipy import stats

    accs = (0.912345671, 0.923456782)
    time_ref = {"metric": "train_time_s", "value": 0.25, "unit": "min", "comparable": True}
    for seed, acc in enumerate(accs):
        study_run(tmp_path, f"net-s{seed}", test_acc=acc, seed=seed, run="net",
                  reference=[*REFERENCES, time_ref])
    files = write_report([tmp_path], figures=False)
    with files.reproduction_csv.open() as fh:
        acc_row, loss_row, time_row = list(csv.DictReader(fh))
    mean, std = statistics.mean(100 * a for a in accs), statistics.stdev(100 * a for a in accs)
    half = stats.t.ppf(0.975, 1) * std / 2 ** 0.5
    assert acc_row == {
        "study": "demo", "run": "net", "metric": "test_acc", "quantity": "test acc", "unit": "%",
        "report_as_printed": "97.02", "report_low": "97.02", "report_high": "97.02",
        "cnnbench": str(round(mean, 6)), "cnnbench_std": str(round(std, 6)),
        "cnnbench_ci_low": str(round(mean - half, 6)), "cnnbench_ci_high": str(round(mean + half, 6)),
        "seeds": "2", "difference": str(round(mean - 97.02, 6)), "difference_unit": "pp",
        "report_in_ci": "inside", "comparable": "True", "profile": "full", "limited": "False",
        "same_recipe": "True", "why_not": "", "source": "000:797",
        "wording": "Test loss 1.960664 acc 97.0200%", "note": ""}
    assert (loss_row["cnnbench_ci_low"], loss_row["difference"], loss_row["report_in_ci"]) == ("", "", "")
    assert loss_row["unit"] == loss_row["difference_unit"] == ""
    # a time: in seconds, its difference too (both seeds trained 12.5 s; the report 15 s)
    assert {k: time_row[k] for k in ("unit", "report_as_printed", "report_low", "cnnbench",
                                     "difference", "difference_unit", "cnnbench_ci_low")} == {
        "unit": "s", "report_as_printed": "0.25 min", "report_low": "15.0", "cnnbench": "12.5",
        "difference": "-2.5", "difference_unit": "s", "cnnbench_ci_low": ""}
    assert loss_row["note"] == "the report's loss is summed over batches" and loss_row["source"] == ""


def test_reproduction_csv_names_each_profile_its_seeds_ran_under(tmp_path):
    for seed, profile in enumerate(("quick", None, "full")):
        study_run(tmp_path, f"net-s{seed}", seed=seed, profile=profile, run="net")
    files = write_report([tmp_path], figures=False)
    with files.reproduction_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [row["profile"] for row in rows] == ["/full/quick"] * 2  # "": the seed without one
