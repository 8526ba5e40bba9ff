"""Comparison figures, grids and ablation changes hold only runs that compare.

A quick or capped run (``RunGroup.capped``) is a smoke test: it never stands in a comparison
figure beside full runs, never gets a change in an ablation table (neither against a full
step nor against another capped one), and is marked in a grid. An ablation step is compared
with the step it continues from or changes (its ``init`` run, else the nearest earlier step
of the same network), never with the row above when that is another network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnbench.report import figures, tables, write_report
from cnnbench.report.records import comparison_groups, group_runs, load_runs, split_comparable
from report_fixtures import table_rows, write_fake_run

FULL = {"profile": "full", "limited": False}
QUICK = {"profile": "quick", "limited": True}
CPU = {"profile": "cpu", "limited": True}


def study_run(root: Path, name: str, *, scale: dict, position: int, model: str = "lenet5",
              test_acc: float = 0.9, macs: int | None = None, init: str | None = None,
              step: str | None = None, axes: dict | None = None, grid: dict | None = None,
              study: str = "demo") -> Path:
    run = write_fake_run(root / name, model=model, test_acc=test_acc, **scale)
    if macs is not None:
        summary = json.loads((run / "summary.json").read_text())
        summary["macs"] = macs
        (run / "summary.json").write_text(json.dumps(summary))
    meta = {"study": study, "run": name, "name": name, "profile": scale["profile"],
            "position": position, "init": init, "axes": axes or {}, "grid_table": grid,
            "options": {"model": model}, "recipe": {"model": model}}
    if step is not None:
        meta.update(step=step, step_index=position, ablation=study)
    (run / "study.json").write_text(json.dumps(meta))
    return run


def groups_of(root: Path):
    return group_runs(load_runs([root]))


@pytest.fixture
def saved(monkeypatch):
    """Every figure the report writes, by file name (the Figure objects themselves)."""
    figures_by_name: dict[str, object] = {}
    original = figures.save

    def save(fig, path):
        if fig is not None:
            figures_by_name[Path(path).name] = fig
        return original(fig, path)

    monkeypatch.setattr(figures, "save", save)
    return figures_by_name


def bar_labels(fig) -> list[str]:
    fig.draw_without_rendering()
    return [t.get_text() for t in fig.axes[0].get_xticklabels()]


def scatter(fig) -> tuple[list[str], list[float]]:
    """The accuracy-vs-MACs figure's point labels and x values (MACs)."""
    ax = fig.axes[0]
    xs = [float(x) for line in ax.get_lines() for x in line.get_xdata()]
    return [t.get_text() for t in ax.texts], xs


# ------------------------------------------------------------------ comparison figures

def test_a_quick_run_never_enters_a_comparison_figure(tmp_path, saved):
    """mnist-five: AlexNet at 10.5 % (quick) beside full runs; mnist-classics: a capped run's
    112 px MACs on the accuracy-vs-MACs plot."""
    runs = tmp_path / "runs"
    study_run(runs, "lenet", scale=FULL, position=0, test_acc=0.975, macs=429_000)
    study_run(runs, "alexnet", scale=QUICK, position=1, model="alexnet", test_acc=0.105,
              macs=318_000_000)
    study_run(runs, "vgg16", scale=CPU, position=2, model="vgg16", test_acc=0.5,
              macs=7_000_000_000)
    study_run(runs, "googlenet", scale=FULL, position=3, model="googlenet", test_acc=0.984,
              macs=1_500_000)
    md = write_report([runs], tmp_path / "report", run_figures=False).markdown.read_text()

    for name in ("test_acc.png", "train_time.png", "params.png"):
        assert bar_labels(saved[name]) == ["lenet", "googlenet"], name
        assert not saved[name].axes[0].get_title()  # comparable runs: no capped title
    labels, macs = scatter(saved["acc_vs_macs.png"])
    assert labels == ["lenet", "googlenet"]
    assert sorted(macs) == [429_000, 1_500_000]  # no capped run's MACs
    # the quick and the cpu run are listed apart, marked, after the figures
    comparison = md.split("### Comparison")[1].split("\n### ")[0]  # to the next section
    assert "#### Quick and capped runs — not comparable, smoke tests only" in comparison
    assert comparison.index("acc_vs_macs.png") < comparison.index("#### Quick and capped")
    rows = table_rows(comparison, "run")
    assert [(r[0], r[2], r[3]) for r in rows] == [("alexnet", "**quick, limited**", "10.50"),
                                                  ("vgg16", "cpu, limited", "50.00")]


def legend_labels(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes for leg in [ax.get_legend()] if leg
            for t in leg.get_texts()} | {line.get_label() for ax in fig.axes
                                         for line in ax.get_lines()}


def test_curves_of_quick_runs_are_never_drawn_beside_full_runs(tmp_path, saved):
    runs = tmp_path / "runs"
    study_run(runs, "lenet", scale=FULL, position=0, test_acc=0.975)
    study_run(runs, "alexnet", scale=QUICK, position=1, model="alexnet", test_acc=0.105)
    md = write_report([runs], tmp_path / "report", run_figures=False).markdown.read_text()
    for name in ("accuracy.png", "loss.png", "train_loss.png", "lr.png"):
        labels = " ".join(legend_labels(saved[name]))
        assert "lenet" in labels and "alexnet" not in labels, name
    assert "alexnet" in " ".join(legend_labels(saved["accuracy-capped.png"]))
    assert "lenet" not in " ".join(legend_labels(saved["accuracy-capped.png"]))
    assert "Quick and capped runs only — smoke tests, not comparable" in md


def test_without_full_runs_the_figures_hold_one_kind_of_capped_run_titled_so(tmp_path, saved):
    runs = tmp_path / "runs"
    study_run(runs, "a-cpu", scale=CPU, position=0, test_acc=0.8)
    study_run(runs, "b-quick", scale=QUICK, position=1, test_acc=0.1)
    study_run(runs, "c-cpu", scale=CPU, position=2, test_acc=0.85)
    md = write_report([runs], tmp_path / "report", run_figures=False).markdown.read_text()

    for name in ("test_acc.png", "train_time.png", "params.png"):
        assert bar_labels(saved[name]) == ["a-cpu", "c-cpu"], name  # one kind, never a mix
        assert "cpu, capped runs only" in saved[name].axes[0].get_title()
    labels, _ = scatter(saved["acc_vs_macs.png"])
    assert labels == ["a-cpu", "c-cpu"]
    assert "cpu, capped runs only" in saved["acc_vs_macs.png"].axes[0].get_title()
    assert "*Test accuracy (error bars: std over seeds) — cpu, capped runs only" in md
    comparison = md.split("### Comparison")[1].split("\n### ")[0]  # to the next section
    assert [r[0] for r in table_rows(comparison, "run")] == ["a-cpu", "b-quick", "c-cpu"]


def test_the_rule_is_one_helper(tmp_path):
    study_run(tmp_path, "q1", scale=QUICK, position=0)
    study_run(tmp_path, "full", scale=FULL, position=1)
    study_run(tmp_path, "q2", scale=QUICK, position=2)
    study_run(tmp_path, "subset", scale={"profile": "full", "limited": True}, position=3)
    groups = groups_of(tmp_path)
    comparable, capped = split_comparable(groups)
    assert [g.label for g in comparable] == ["full"]
    assert [g.label for g in capped] == ["q1", "q2", "subset"]
    assert [g.label for g in comparison_groups(groups)[0]] == ["full"]
    shown, kind = comparison_groups(capped)
    assert ([g.label for g in shown], kind) == (["q1", "q2"], "quick")  # the most numerous
    assert comparison_groups([]) == ([], "")


def test_capped_runs_of_as_many_kinds_show_the_least_capped_and_a_profile_makes_a_kind(tmp_path):
    study_run(tmp_path, "q", scale=QUICK, position=0)
    study_run(tmp_path, "c", scale=CPU, position=1)
    study_run(tmp_path, "subset-full", scale={"profile": "full", "limited": True}, position=2)
    study_run(tmp_path, "subset-tiny", scale={"profile": "tiny", "limited": True}, position=3)
    groups = groups_of(tmp_path)
    assert [g.capped for g in groups] == ["quick", "cpu, capped", "limited", "limited"]
    shown, kind = comparison_groups(groups)  # one run of each kind: the least capped, first
    assert ([g.label for g in shown], kind) == (["subset-full"], "limited")
    shown, kind = comparison_groups(groups[:2])
    assert ([g.label for g in shown], kind) == (["c"], "cpu, capped")


# ------------------------------------------------------------------------------ grid

def test_grid_marks_quick_cells_and_its_legend_says_so(tmp_path):
    """optimizers: a quick 7.42 beside full-recipe numbers with no mark."""
    grid = {"rows": "model", "cols": "optimizer"}
    cells = (("lenet5", "sgd", FULL, 0.9879), ("lenet5", "adam", FULL, 0.9892),
             ("alexnet", "sgd", QUICK, 0.0742), ("alexnet", "adam", QUICK, 0.0859))
    for position, (model, opt, scale, acc) in enumerate(cells):
        study_run(tmp_path, f"{model}-{opt}", scale=scale, position=position, model=model,
                  test_acc=acc, axes={"model": model, "optimizer": opt}, grid=grid)
    header, rows = tables.grid_table(groups_of(tmp_path), "model", "optimizer")
    assert rows == [["lenet5", "98.79", "98.92"], ["alexnet", "7.42 (quick)", "8.59 (quick)"]]
    md = write_report([tmp_path], tmp_path / "report", figures=False).markdown.read_text()
    assert table_rows(md, "model") == rows
    legend = md.split("### model × optimizer")[1].split("| model |")[0]
    assert "(quick)" in legend and "not comparable" in legend


# -------------------------------------------------------------------------- ablations

def changes(root: Path) -> dict[str, tuple[str, str]]:
    [(header, rows)] = tables.ablation_tables(groups_of(root)).values()
    assert header[4:6] == ["vs previous (pp)", "vs baseline (pp)"]
    return {row[2]: (row[4], row[5]) for row in rows}


def test_quick_steps_never_get_a_change(tmp_path):
    """alexnet-ablation: "+BatchNorm -5.08 pp" between two quick runs."""
    for i, (name, acc) in enumerate((("plain", 0.1484), ("bn", 0.0977), ("bn-dropout", 0.0938))):
        study_run(tmp_path, name, scale=QUICK, position=i, test_acc=acc, step=f"+ {name}")
    assert changes(tmp_path) == {"plain": ("—", "—"),
                                 "bn": ("— (capped)", "— (capped)"),
                                 "bn-dropout": ("— (capped)", "— (capped)")}


TRICKS = (  # cifar10-tricks: (run, network, init)
    ("simple-cnn", "simple_cnn", None), ("simple-cnn-aug", "simple_cnn", None),
    ("simple-cnn-aug-l2", "simple_cnn", "simple-cnn-aug"),
    ("resnet18", "resnet18_tricks", None), ("resnet18-tuned", "resnet18_tricks", "resnet18"),
    ("vgg16_bn", "vgg16_bn_tricks", None), ("vgg16_bn-tuned", "vgg16_bn_tricks", "vgg16_bn"))
ACCS = (0.6147, 0.6367, 0.6767, 0.8392, 0.9126, 0.88, 0.9012)


def tricks(root: Path, scales) -> Path:
    for i, ((name, model, init), scale, acc) in enumerate(zip(TRICKS, scales, ACCS)):
        study_run(root, name, scale=scale, position=i, model=model, init=init, test_acc=acc,
                  step=name, study="cifar10-tricks")
    return root


def test_a_step_is_compared_with_the_step_it_continues_not_another_network(tmp_path):
    """All on the full recipe: VGG from scratch is not compared with ResNet tuned."""
    assert changes(tricks(tmp_path, [FULL] * 7)) == {
        "simple-cnn": ("—", "—"),
        "simple-cnn-aug": ("+2.20", "+2.20"),
        "simple-cnn-aug-l2": ("+4.00", "+6.20"),
        "resnet18": ("— (new network: no earlier step of it)", "— (other network than #0)"),
        "resnet18-tuned": ("+7.34", "— (other network than #0)"),
        "vgg16_bn": ("— (new network: no earlier step of it)", "— (other network than #0)"),
        "vgg16_bn-tuned": ("+2.12", "— (other network than #0)")}


def test_the_committed_cifar10_tricks_mix(tmp_path):
    """As committed: the simple-CNN ladder full, ResNet-18 and VGG-16-BN quick."""
    assert changes(tricks(tmp_path, [FULL] * 3 + [QUICK] * 4)) == {
        "simple-cnn": ("—", "—"),
        "simple-cnn-aug": ("+2.20", "+2.20"),
        "simple-cnn-aug-l2": ("+4.00", "+6.20"),
        "resnet18": ("— (new network: no earlier step of it)", "— (other network than #0)"),
        "resnet18-tuned": ("— (capped)", "— (other network than #0)"),
        "vgg16_bn": ("— (new network: no earlier step of it)", "— (other network than #0)"),
        "vgg16_bn-tuned": ("— (capped)", "— (other network than #0)")}


def test_a_step_after_another_network_names_the_step_it_is_compared_with(tmp_path):
    steps = (("base", "lenet5", FULL, 0.90), ("other", "vgg16", FULL, 0.80),
             ("base-aug", "lenet5", FULL, 0.93), ("base-aug-quick", "lenet5", QUICK, 0.50))
    for i, (name, model, scale, acc) in enumerate(steps):
        study_run(tmp_path, name, scale=scale, position=i, model=model, test_acc=acc, step=name)
    assert changes(tmp_path) == {
        "base": ("—", "—"),
        "other": ("— (new network: no earlier step of it)", "— (other network than #0)"),
        "base-aug": ("+3.00 (vs #0)", "+3.00"),
        "base-aug-quick": ("— (capped)", "— (capped)")}


def test_a_group_with_one_limited_seed_is_capped_and_gets_no_difference(tmp_path):
    """The seeds of a run are capped when any of them is: one seed on a subset of the images
    makes the whole group "limited" (not set against the report, not in the full figures)."""
    for seed, scale in ((0, FULL), (1, {**FULL, "limited": True})):
        run = write_fake_run(tmp_path / f"net-seed{seed}", seed=seed, **scale)
        (run / "study.json").write_text(json.dumps({
            "study": "demo", "run": "net", "name": f"net-seed{seed}", "profile": "full",
            "position": 0, "options": {"model": "lenet5"}, "recipe": {"model": "lenet5"}}))
    (group,) = groups_of(tmp_path)
    assert len(group.records) == 2 and group.capped == "limited"
    assert group.recipe_gaps()[0].startswith("trained or evaluated on a subset")
    assert split_comparable([group])[0] == []
