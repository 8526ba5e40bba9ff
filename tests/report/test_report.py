"""The comparison report, from fake run directories (no training)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from cnnbench.cli import main
from cnnbench.report import write_report
from cnnbench.report.records import reference_difference
from cnnbench.training.rundir import save_misclassified
from report_fixtures import table_rows, write_fake_run


def study_meta(run: str, *, step: str | None = None, step_index: int | None = None,
               reference: dict | None = None, axes: dict | None = None, seed: int = 0,
               grid_table: dict | None = None, position: int = 0) -> dict:
    return {"study": "demo", "study_description": "a demo study", "study_report": "the report",
            "study_notes": ["a note"], "grid_table": grid_table, "profile": "quick", "run": run,
            "name": run, "seed": seed, "init": None, "reference": reference, "step": step,
            "step_index": step_index, "ablation": "demo" if step else None, "axes": axes or {},
            "note": "", "position": position, "options": {}, "recipe": {}}


def write_meta(run_dir: Path, meta: dict) -> None:
    (run_dir / "study.json").write_text(json.dumps(meta))


@pytest.fixture
def ablation_dir(tmp_path):
    """Three cumulative steps (one failed) and a reference on the last finished one."""
    out = tmp_path / "study"
    steps = [("base", 0.60, "finished", None),
             ("plus-aug", 0.65, "finished", {"value": 64.0, "metric": "test_acc",
                                             "wording": "aug: 64%", "note": "chosen on test"}),
             ("plus-l2", 0.0, "failed", None)]
    for i, (name, acc, status, ref) in enumerate(steps):
        run = write_fake_run(out / name, test_acc=acc, status=status,
                             misclassified=(name == "base"))
        write_meta(run, study_meta(name, step=f"step {name}", step_index=i, reference=ref))
    return out


def test_report_rows_figures_failures_and_references(ablation_dir):
    files = write_report([ablation_dir])
    md = files.markdown.read_text()

    rows = table_rows(md, "run")
    assert [r[0] for r in rows] == ["base", "plus-aug", "plus-l2"]  # one row per run
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    for column in ("test acc (%)", "best val acc (%)", "params", "MACs", "train time",
                   "train img/s", "device", "profile"):
        assert column in header
    assert "report" not in header  # the references have their own table
    assert "**FAILED**" in rows[2]
    assert "**quick, limited**" in rows[0]
    assert "RuntimeError: out of memory" in md  # the failed run's error line

    # the reference of a quick run: both numbers, no difference, and why
    assert "#### Runs not on the report's recipe — not comparable" in md
    assert table_rows(md, "run")[0] == rows[0]  # the results table comes first
    reproduction = table_rows(md.split("### Reproduction")[1], "run")
    assert reproduction == [["plus-aug", "test acc", "64 % [1]", "65.00 %", "—", "—",
                             "**quick, limited**", "no: quick smoke test"]]
    assert "chosen on test" in md and "aug: 64%" in md

    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert figures, "the report shows figures"
    for rel in figures:
        assert (ablation_dir / rel).is_file(), rel
    names = {Path(f).name for f in figures}
    assert {"accuracy.png", "loss.png", "train_loss.png", "lr.png", "test_acc.png",
            "train_time.png", "params.png", "acc_vs_macs.png", "confusion-base.png",
            "confusion-plus-aug.png", "misclassified-base.png"} <= names
    assert {Path(f) for f in files.figures} == {ablation_dir / f for f in figures}

    html = files.html.read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "figures/" not in html  # self-contained

    with files.csv.open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["run"] for r in table] == ["base", "plus-aug", "plus-l2"]
    assert [r["status"] for r in table] == ["finished", "finished", "failed"]
    assert float(table[1]["test_acc"]) == pytest.approx(0.65)
    with files.reproduction_csv.open() as fh:
        reproduction = list(csv.DictReader(fh))
    assert [(r["run"], r["metric"], r["same_recipe"], r["difference"]) for r in reproduction] == [
        ("plus-aug", "test_acc", "False", "")]


def test_ablation_table_changes_against_previous_and_baseline(ablation_dir):
    md = write_report([ablation_dir], figures=False).markdown.read_text()
    assert "### Ablation: demo" in md
    rows = table_rows(md, "#")
    assert [r[1] for r in rows] == ["step base", "step plus-aug", "step plus-l2"]
    assert rows[0][4:6] == ["—", "—"]
    assert rows[1][3:6] == ["65.00", "— (capped)", "— (capped)"]  # quick steps compare with nothing
    assert rows[2][3] == "**FAILED**"


def test_seeds_are_aggregated_as_mean_and_std(tmp_path):
    for seed, acc in ((0, 0.90), (1, 0.92), (2, 0.94)):
        run = write_fake_run(tmp_path / f"lenet-seed{seed}", test_acc=acc, seed=seed)
        write_meta(run, study_meta("lenet", seed=seed))
    md = write_report([tmp_path], figures=False).markdown.read_text()
    rows = table_rows(md, "run")
    assert len(rows) == 1
    assert rows[0][0] == "lenet" and rows[0][4] == "3"
    assert rows[0][5] == "92.00 ± 2.00 [87.03, 96.97]"  # mean ± std [t-interval of the mean]


def test_runs_without_study_metadata_group_by_config(tmp_path):
    a = write_fake_run(tmp_path / "a", seed=1, test_acc=0.8)
    b = write_fake_run(tmp_path / "b", seed=2, test_acc=0.9)
    c = write_fake_run(tmp_path / "c", model="simple_cnn", test_acc=0.7)
    out = tmp_path / "report"
    files = write_report([a, b, c], out, figures=False)
    rows = table_rows(files.markdown.read_text(), "run")
    assert len(rows) == 2 and rows[0][5] == "85.00 ± 7.07 [21.47, 100.00]"  # clipped
    assert files.markdown.parent == out


def test_model_by_optimizer_grid(tmp_path):
    grid = {"rows": "model", "cols": "optimizer"}
    runs = (("lenet5", "sgd", 0.9), ("lenet5", "adam", 0.95), ("vgg16", "sgd", 0.8))
    for position, (model, opt, acc) in enumerate(runs):  # the study's order, not the dirs'
        run = write_fake_run(tmp_path / f"{model}-{opt}", model=model, test_acc=acc)
        write_meta(run, study_meta(f"{model}-{opt}", axes={"model": model, "optimizer": opt},
                                   grid_table=grid, position=position))
    md = write_report([tmp_path], figures=False).markdown.read_text()
    rows = table_rows(md, "model")
    assert rows == [["lenet5", "90.00 (quick)", "95.00 (quick)"], ["vgg16", "80.00 (quick)", "—"]]
    assert "A cell marked (quick) is a quick or capped run" in md  # the legend says it


def test_save_misclassified_keeps_the_wrong_images_only(tmp_path):
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 4, 4)
    n = save_misclassified(tmp_path, images, torch.tensor([0, 9, 2, 9, 4, 9]),
                           torch.tensor([0, 1, 2, 3, 4, 5]), limit=2)
    data = torch.load(tmp_path / "misclassified.pt", weights_only=True)
    assert n == 2 and data["index"].tolist() == [1, 3]
    assert data["images"][:, 0, 0, 0].tolist() == [1, 3] and data["images"].dtype == torch.uint8
    assert data["pred"].tolist() == [9, 9] and data["true"].tolist() == [1, 3]


def test_save_misclassified_spreads_the_gallery_over_classes(tmp_path):
    # A test set stored in class order (as image folders are): 4 errors of
    # class 0 come first, then one each of classes 1 and 2.
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    predictions = torch.tensor([1, 1, 1, 1, 0, 1, 0])
    images = torch.zeros(7, 1, 2, 2, dtype=torch.uint8)
    n = save_misclassified(tmp_path, images, predictions, targets, limit=4)
    data = torch.load(tmp_path / "misclassified.pt", weights_only=True)
    assert n == 4 and data["index"].tolist() == [0, 4, 6, 1]
    assert data["true"].tolist() == [0, 1, 2, 0]
    assert save_misclassified(tmp_path, images, targets, targets) == 0  # no errors: empty file


def test_the_gallery_draws_the_heat_maps_saved_beside_its_images(tmp_path):
    from cnnbench.report.figures import misclassified_gallery
    from cnnbench.report.records import RunRecord

    targets, predictions = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 2, 1])
    images = torch.zeros(4, 1, 6, 6, dtype=torch.uint8)
    seen = []

    def explain(rows, classes):
        seen.append((rows.tolist(), classes.tolist()))
        return {"heat": torch.full((len(rows), 6, 6), 200, dtype=torch.uint8),
                "cam_layer": "layer4", "cam_method": "grad-cam"}

    run_dir = write_fake_run(tmp_path / "r")
    assert save_misclassified(run_dir, images, predictions, targets, explain=explain) == 2
    assert seen == [([1, 3], [2, 1])]  # the gallery's rows, for their predicted classes
    fig = misclassified_gallery(RunRecord.load(run_dir))
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 2 and all(len(ax.images) == 2 for ax in drawn)  # image + heat map
    assert drawn[0].images[1].get_array().max() == pytest.approx(200 / 255)
    assert "Grad-CAM at layer4" in fig._suptitle.get_text()
    save_misclassified(run_dir, images, predictions, targets)  # a run without heat maps
    fig = misclassified_gallery(RunRecord.load(run_dir))
    assert all(len(ax.images) == 1 for ax in fig.axes if ax.images) and fig._suptitle is None


def test_reference_difference_of_values_and_ranges():
    assert reference_difference(90.0, 89.5) == pytest.approx(0.5)
    assert reference_difference(66.0, (64, 68)) == 0.0
    assert reference_difference(64.0, (64, 68)) == reference_difference(68.0, (64, 68)) == 0.0  # ends inside
    assert reference_difference(62.0, (64, 68)) == pytest.approx(-2.0)
    assert reference_difference(70.0, (64, 68)) == pytest.approx(2.0)
    assert reference_difference(None, 1.0) is None


def test_without_figures_the_same_tables_and_files_and_no_picture(ablation_dir, tmp_path, capsys):
    """`cnnbench report --no-figures`: no PNG file, no figure in the page, and every table,
    results.csv and reproduction.csv exactly as in the report with its figures; with
    `--no-run-figures`, all but the per-run figures."""
    drawn = write_report([ablation_dir], tmp_path / "drawn")
    assert main(["report", str(ablation_dir), "--out", str(tmp_path / "bare"), "--no-figures"]) == 0
    assert "(0 figures)" in capsys.readouterr().out
    bare = tmp_path / "bare"
    assert drawn.figures and not list(bare.rglob("*.png"))
    md = (bare / "report.md").read_text()
    assert "Figures were not drawn (`--no-figures`)" in md and "![" not in md
    assert "<img" not in (bare / "report.html").read_text()
    tables_of = lambda text: [line for line in text.splitlines() if line.startswith("|")]  # noqa: E731
    assert tables_of(md) == tables_of(drawn.markdown.read_text())
    for name in ("results.csv", "reproduction.csv"):
        assert (bare / name).read_text() == (tmp_path / "drawn" / name).read_text(), name
    # the sections made of figures alone are left out, every other one is there
    headings_of = lambda text: [line for line in text.splitlines() if line.startswith("#")]  # noqa: E731
    assert {"### Curves", "### Per run"} <= set(headings_of(drawn.markdown.read_text()))
    assert headings_of(md) == [h for h in headings_of(drawn.markdown.read_text())
                               if h not in ("### Curves", "### Per run")]

    # --no-run-figures: every figure but each run's confusion matrix and gallery
    assert main(["report", str(ablation_dir), "--out", str(tmp_path / "lean"), "--no-run-figures"]) == 0
    lean = tmp_path / "lean"
    per_run = {p.name for p in drawn.figures if p.name.startswith(("confusion-", "misclassified-"))}
    assert per_run and {p.name for p in lean.rglob("*.png")} == {p.name for p in drawn.figures} - per_run
    md = (lean / "report.md").read_text()
    assert "confusion matrix and gallery were not drawn (`--no-run-figures`)" in md
    assert headings_of(md) == [h for h in headings_of(drawn.markdown.read_text()) if h != "### Per run"]
    assert tables_of(md) == tables_of(drawn.markdown.read_text())


def test_without_figures_full_runs_keep_their_views_tables_and_lose_the_comparison_figures(tmp_path):
    """Full runs only (no capped table: no Comparison section without figures) with their
    calibration recorded (a view beyond accuracy: its table stays, its diagram goes)."""
    for name, model, ece in (("a", "lenet5", 0.05), ("b", "simple_cnn", 0.1)):
        run = write_fake_run(tmp_path / "runs" / name, model=model, profile="full", limited=False)
        summary = json.loads((run / "summary.json").read_text())
        summary.update(test_ece=ece, test_brier=0.2, test_loss=0.4, temperature=None,
                       reliability={"test": {"bins": 15, "count": [0] * 14 + [100],
                                             "confidence": [None] * 14 + [0.9],
                                             "accuracy": [None] * 14 + [0.85]},
                                    "test_scaled": None})
        (run / "summary.json").write_text(json.dumps(summary))
    drawn = write_report([tmp_path / "runs"], tmp_path / "drawn").markdown.read_text()
    bare = write_report([tmp_path / "runs"], tmp_path / "bare", figures=False)
    md = bare.markdown.read_text()
    assert not bare.figures and not list((tmp_path / "bare").rglob("*.png")) and "![" not in md
    assert "### Calibration" in md and "### Comparison" in drawn and "### Comparison" not in md
    tables_of = lambda text: [line for line in text.splitlines() if line.startswith("|")]  # noqa: E731
    assert tables_of(md) == tables_of(drawn) and any("0.0500" in row for row in tables_of(md))


def test_cli_report(tmp_path, capsys):
    a = write_fake_run(tmp_path / "runs" / "a")
    b = write_fake_run(tmp_path / "runs" / "b", model="simple_cnn")
    assert main(["report", str(a), str(b)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path / "rep" / "figures")]) == 2  # no run directories
