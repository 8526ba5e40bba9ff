"""The report's tables (cnnbench.report.tables): grids, ablation steps, results.csv."""

from __future__ import annotations

from cnnbench.report import tables
from cnnbench.report.records import group_runs, load_runs
from cnnbench.training.rundir import write_json
from report_fixtures import write_fake_run


def _grid_run(root, name, model, optimizer, seed, acc, axes=True):
    run = write_fake_run(root / name, model=model, seed=seed, test_acc=acc,
                         config={"optimizer": optimizer})
    study = {"study": "grid", "run": name.split("-seed")[0],
             "axes": {"model": model, "optimizer": optimizer} if axes else {}}
    write_json(run / "study.json", study)


def test_grid_table_needs_both_axes_and_shows_the_spread_of_seeds(tmp_path):
    _grid_run(tmp_path, "lenet5-sgd-seed0", "lenet5", "sgd", 0, 0.90)
    _grid_run(tmp_path, "lenet5-sgd-seed1", "lenet5", "sgd", 1, 0.92)
    _grid_run(tmp_path, "vgg16-adam-seed0", "vgg16", "adam", 0, 0.80)
    _grid_run(tmp_path, "alexnet-sgd-seed0", "alexnet", "sgd", 0, 0.70, axes=False)  # no axes
    groups = group_runs(load_runs([tmp_path]))
    header, rows = tables.grid_table(groups, "model", "optimizer")
    assert header == ["model", "sgd", "adam"]
    # the fixture's runs are quick: each cell says so
    assert rows == [["lenet5", "91.00 ± 1.41 (quick)", "—"], ["vgg16", "—", "80.00 (quick)"]]
    assert tables.grid_table(groups, "model", "lr") is None  # an axis no run has


def test_report_command_counts_figures_in_words(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    import cnnbench.report as report
    from cnnbench.cli import main
    from cnnbench.report.write import ReportFiles

    run = write_fake_run(tmp_path / "a")
    for drawn, words in (((Path("f.png"),), "(1 figure)"), ((Path("f.png"), Path("g.png")), "(2 figures)")):
        monkeypatch.setattr(report, "write_report", lambda *a, drawn=drawn, **k: ReportFiles(
            Path("r.md"), Path("r.html"), Path("r.csv"), drawn))
        assert main(["report", str(run)]) == 0
        assert words in capsys.readouterr().out
