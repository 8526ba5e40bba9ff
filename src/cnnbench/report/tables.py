"""The report's tables, as (header, rows) of strings, and ``results.csv``.

Accuracies are fractions in the run files and percent in the tables; differences are in
percentage points (pp). The reproduction table (the lab reports' numbers beside cnnbench's)
is :mod:`cnnbench.report.reproduction`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from cnnbench.config import PER_SEED
from cnnbench.report.cells import count, duration, pct, reference_text, signed, value_text
from cnnbench.report.records import QUANTITIES, RunGroup, RunRecord, split_comparable
from cnnbench.report.stats import seed_stats, wilson_interval

PROFILE_NOTES = {
    "quick": "smoke test: a few hundred images, one epoch; its accuracy says nothing",
    "cpu": "the report's recipe with epochs and images capped to fit 2 CPU cores",
    "full": "the report's own recipe",
}

# Shown in the shared recipe even when at their defaults.
_ALWAYS_SHOWN = {"dataset", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
                 "scheduler", "augment", "val_split"}


def profile_text(group: RunGroup) -> str:
    profiles = sorted({r.profile or "?" for r in group.records})
    text = "/".join(profiles)
    if any(r.limited for r in group.records):
        text += ", limited"
    return f"**{text}**" if "quick" in profiles else text


def n_seeds(group: RunGroup) -> int:
    return len(group.finished)


# The results table's test-accuracy column: which 95 % interval the brackets hold.
TEST_ACC_HEADER = "test acc (%) [95% CI: Wilson (1 seed) / t (seeds)]"

# The split an accuracy is measured on (its image count for a Wilson interval); train_acc has
# none: it is measured on augmented batches while the weights change.
_SPLIT_OF = {"test_acc": "test", "max_epoch_test_acc": "test", "val_acc": "val",
             "best_val_acc": "val"}


def _wilson_of(accuracy, record: RunRecord, split: str) -> tuple[float, float] | None:
    """The Wilson interval of a fraction measured on the images of ``split`` (summary.json's
    split sizes, as limited); ``None`` when either is unknown."""
    n = (record.summary.get("split") or {}).get(split)
    if (not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool)
            or not isinstance(n, int) or n <= 0 or not 0 <= accuracy <= 1):
        return None
    return wilson_interval(round(accuracy * n), n)


def record_test_interval(record: RunRecord) -> tuple[float, float] | None:
    """The Wilson 95 % interval (fractions) of one run directory's test accuracy: counted from
    its saved predictions (``test_predictions.json``), else from summary.json's ``test_acc``
    and test split size; ``None`` when neither is there."""
    saved = record.predictions
    if saved is not None:
        correct = sum(int(p == t) for p, t in zip(saved["predictions"], saved["targets"]))
        return wilson_interval(correct, len(saved["targets"]))
    return _wilson_of(record.summary.get("test_acc"), record, "test")


def accuracy_interval(group: RunGroup, metric: str = "test_acc") -> tuple[float, float] | None:
    """cnnbench's 95 % interval (fractions) of an accuracy of a run (a :data:`QUANTITIES` key):
    with several finished seeds the Student-t interval of the mean over the seeds (clipped to
    [0, 1]); with one, the Wilson interval over the images of its split (``test_acc``: its
    saved predictions first); ``None`` when there is no such number (``train_acc`` with one
    seed: no fixed image count)."""
    quantity = QUANTITIES.get(metric)
    finished = group.finished
    if quantity is None or not finished:
        return None
    if len(finished) > 1:
        spread = seed_stats([quantity.read(r) for r in finished])
        return None if spread is None else (max(0.0, spread.low), min(1.0, spread.high))
    record = finished[0]
    if metric == "test_acc":
        return record_test_interval(record)
    split = _SPLIT_OF.get(metric)
    return _wilson_of(quantity.read(record), record, split) if split else None


def accuracy_cell(group: RunGroup) -> str:
    """``97.50 [97.18, 97.77]`` (one seed: Wilson over the test images) or ``97.50 ± 0.10
    [97.25, 97.75]`` (several: mean ± sample std [t-interval of the mean]); no brackets
    when no interval can be computed."""
    text = pct(group.test_acc, n_seeds(group))
    interval = accuracy_interval(group, "test_acc") if group.test_acc else None
    return text if interval is None else f"{text} [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"


def results_table(groups: list[RunGroup]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "model", "dataset", "profile", "seeds", TEST_ACC_HEADER, "best val acc (%)",
              "params", "MACs", "train time", "train img/s", "device", "status"]
    rows = []
    for g in groups:
        n = n_seeds(g)
        status = g.status if g.status == "finished" else f"**{g.status.upper()}**"
        row = [g.label, str(g.first.get("model", "—")), str(g.first.get("dataset", "—")),
               profile_text(g), str(n if n else len(g.records)),
               accuracy_cell(g) + (" *last*" if {r.summary.get("tested_weights")
                                                for r in g.finished} == {"last"} else ""),
               pct(g.best_val_acc, n),
               count(g.first.get("params")), count(g.first.get("macs")),
                duration(_mean(g, "train_time_s")),
                f"{_mean(g, 'train_images_per_s'):.0f}" if _mean(g, "train_images_per_s") else "—",
                device_text(g.first), status]
        rows.append(row)
    return header, rows


def _mean(group: RunGroup, key: str) -> float | None:
    ms = group.stat(key)
    return ms[0] if ms else None


def device_text(record: RunRecord) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    device = str(record.get("device", "—"))
    name = record.summary.get("device_name")
    return f"{device} ({name})" if name and device.startswith("cuda") else device


def run_notes(groups: list[RunGroup]) -> list[str]:
    """The study file's ``note:`` of each run that has one."""
    return [f"**{g.label}**: {g.first.study['note']}" for g in groups if g.first.study.get("note")]


def _test_reference(group: RunGroup) -> dict | None:
    """The run's first reference to a test accuracy (the ablation tables' report column)."""
    return next((r for r in group.references
                 if r["metric"] in ("test_acc", "max_epoch_test_acc")), None)


def _network(group: RunGroup) -> str:
    return str(group.first.get("model") or "")


def _ablation_base(steps: list[RunGroup], i: int) -> int | None:
    """The step that step ``i`` continues from or changes: its ``init`` run when that is a
    step of the chain, else the nearest earlier step of the same network; ``None`` if none
    (a step that starts another network, as cifar10-tricks' ResNet-18 and VGG-16-BN)."""
    init = re.sub(r"-seed\d+$", "", steps[i].first.study.get("init") or "")  # the run, not a seed
    for j in range(i - 1, -1, -1):
        if init and steps[j].label == init:
            return j
    network = _network(steps[i])
    return next((j for j in range(i - 1, -1, -1) if _network(steps[j]) == network), None)


def ablation_tables(groups: list[RunGroup]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """One table per ablation: a row per cumulative step, change vs previous and baseline.

    "vs previous" is against the step a step continues from or changes
    (:func:`_ablation_base`; ``(vs #k)`` when that is not the row above), "vs baseline"
    against step 0 when it is the same network; a cell without a step to compare with says
    why. A change is computed only between comparable steps (:func:`split_comparable`): a
    quick or capped step is never compared, with a full step or with another capped one
    (``— (capped)``)."""
    chains: dict[str, list[RunGroup]] = {}
    for g in groups:
        if g.first.study.get("step") is not None:
            chains.setdefault(g.first.study.get("ablation") or "ablation", []).append(g)
    tables = {}
    for chain, steps in chains.items():
        steps.sort(key=lambda g: g.first.study.get("step_index") or 0)
        refs = [_test_reference(g) for g in steps]
        header = ["#", "step", "run", "test acc (%)", "vs previous (pp)", "vs baseline (pp)"]
        header += ["report (%)"] if any(refs) else []
        header += ["profile"]
        rows = []
        values = [100 * g.test_acc[0] if g.test_acc else None for g in steps]
        comparable = {id(g) for g in split_comparable(steps)[0]}

        def change(i: int, j: int | None, why_none: str, which: str = "") -> str:
            if j is None:
                return f"— ({why_none})"
            if id(steps[i]) not in comparable:
                return "— (capped)"
            if id(steps[j]) not in comparable:
                return f"— (#{j} capped)"
            if None in (values[i], values[j]):
                return "—"
            return signed(values[i] - values[j]) + which

        for i, g in enumerate(steps):
            acc = g.test_acc
            base = _ablation_base(steps, i) if i else None
            same_as_0 = _network(g) == _network(steps[0])
            row = [str(i), g.first.study["step"], g.label,
                   pct(acc, n_seeds(g)) if acc else f"**{g.status.upper()}**",
                   change(i, base, "new network: no earlier step of it",
                          "" if base == i - 1 else f" (vs #{base})") if i else "—",
                   change(i, 0 if same_as_0 else None, "other network than #0") if i else "—"]
            row += [reference_text(refs[i])] if any(refs) else []
            row += [profile_text(g)]
            rows.append(row)
        tables[chain] = (header, rows)
    return tables


def grid_table(groups: list[RunGroup], rows_axis: str, cols_axis: str
               ) -> tuple[list[str], list[list[str]]] | None:
    """Test accuracy (%) with one row per ``rows_axis`` label and a column per ``cols_axis``.

    A cell of a run that is not comparable (:func:`split_comparable`: quick, cpu-capped or
    limited) says so after its number, ``7.42 (quick)``; the report's legend explains it."""
    cells: dict[tuple[str, str], RunGroup] = {}
    row_labels: list[str] = []
    col_labels: list[str] = []
    for g in groups:
        axes = g.first.study.get("axes") or {}
        if rows_axis not in axes or cols_axis not in axes:
            continue
        r, c = str(axes[rows_axis]), str(axes[cols_axis])
        cells[(r, c)] = g
        row_labels += [r] if r not in row_labels else []
        col_labels += [c] if c not in col_labels else []
    if not cells:
        return None
    capped = {id(g) for g in split_comparable(list(cells.values()))[1]}
    header = [rows_axis, *col_labels]
    rows = []
    for r in row_labels:
        row = [r]
        for c in col_labels:
            g = cells.get((r, c))
            if g is None:
                row.append("—")
            elif g.test_acc is None:
                row.append(f"**{g.status.upper()}**")
            else:
                row.append(pct(g.test_acc, n_seeds(g))
                           + (f" ({g.capped})" if id(g) in capped else ""))
        rows.append(row)
    return header, rows


def capped_table(groups: list[RunGroup]) -> tuple[list[str], list[list[str]]]:
    """The runs that are not comparable (:func:`split_comparable`), apart from the
    comparison figures: what each is and why its numbers compare with nothing."""
    why = {"quick": PROFILE_NOTES["quick"], "cpu, capped": PROFILE_NOTES["cpu"],
           "limited": "trained or evaluated on a subset of the images (limit_train / limit_eval)"}
    header = ["run", "model", "profile", "test acc (%)", "train time", "params", "MACs",
              "not comparable because"]
    rows = []
    for g in split_comparable(groups)[1]:
        n = n_seeds(g)
        rows.append([g.label, str(g.first.get("model", "—")), profile_text(g),
                     pct(g.test_acc, n) if g.test_acc else f"**{g.status.upper()}**",
                     duration(_mean(g, "train_time_s")), count(g.first.get("params")),
                     count(g.first.get("macs")), why.get(g.capped, g.capped)])
    return header, rows


def recipe(record: RunRecord) -> dict:
    source = record.config or record.study.get("options") or {}
    return {k: v for k, v in source.items() if k not in PER_SEED}


def recipe_table(groups: list[RunGroup]) -> tuple[dict, tuple[list[str], list[list[str]]]]:
    """Settings shared by every run that are not cnnbench's defaults, and a table of the
    settings that differ between runs (plus where each run started from, and its seeds)."""
    from cnnbench.config import TrainConfig

    defaults = TrainConfig().to_dict()
    recipes = [recipe(g.first) for g in groups]
    keys = []
    for r in recipes:
        keys += [k for k in r if k not in keys]
    shared = [k for k in keys if all(r.get(k) == recipes[0].get(k) for r in recipes)]
    common = {k: recipes[0].get(k) for k in shared
              if k in _ALWAYS_SHOWN or recipes[0].get(k) != defaults.get(k, object())}
    varying = [k for k in keys if k not in shared]
    header = ["run", *varying, "starts from", "seeds"]
    rows = []
    for g, r in zip(groups, recipes):
        seeds = ", ".join(str(rec.get("seed")) for rec in g.records)
        rows.append([g.label, *[value_text(r.get(k)) for k in varying],
                     g.first.study.get("init") or ("checkpoint" if g.first.get("init") else "—"),
                     seeds])
    return common, (header, rows)


def data_table(groups: list[RunGroup]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "dataset", "train", "val", "test", "input size", "stem", "limit train",
              "limit eval", "epochs done"]
    rows = []
    for g in groups:
        rec = g.first
        split = rec.summary.get("split") or {}
        planned = rec.get("epochs")
        done = rec.summary.get("epochs_completed")
        rows.append([g.label, str(rec.get("dataset", "—")), value_text(split.get("train")),
                     value_text(split.get("val")), value_text(split.get("test")),
                     value_text(rec.summary.get("input_size")), value_text(rec.summary.get("stem")),
                     value_text(rec.get("limit_train")), value_text(rec.get("limit_eval")),
                     f"{value_text(done)} of {value_text(planned)}"])
    return header, rows


def environment(records: list[RunRecord]) -> list[str]:
    """Hardware, library versions, commits and commands, each listed once."""
    def distinct(*keys: str) -> list[str]:
        seen = []
        for r in records:
            parts = [str(r.summary[k]) for k in keys if r.summary.get(k) is not None]
            text = ", ".join(parts)
            if text and text not in seen:
                seen.append(text)
        return seen

    lines = []
    for label, keys in (("device", ("device", "device_name")), ("CPU", ("cpu", "num_threads")),
                        ("host", ("hostname",)),
                        ("torch / torchvision / cnnbench",
                         ("torch_version", "torchvision_version", "cnnbench_version")),
                        ("commit", ("git_commit",))):
        values = distinct(*keys)
        if values:
            lines.append(f"{label}: " + "; ".join(f"`{v}`" for v in values))
    commands = distinct("command")
    if commands:
        lines.append("command: " + "; ".join(f"`{c}`" for c in commands[:5])
                     + (f" (and {len(commands) - 5} more)" if len(commands) > 5 else ""))
    return lines


CSV_FIELDS = ["study", "run", "dir", "status", "model", "dataset", "profile", "limited",
              "seed", "epochs", "epochs_completed", "test_acc", "test_acc_ci_low",
              "test_acc_ci_high", "test_loss", "best_val_acc",
              "best_epoch", "params", "macs", "flops", "train_time_s", "eval_time_s",
              "train_images_per_s", "device", "error"]


def write_csv(groups: list[RunGroup], path: Path) -> Path:
    """``results.csv``: one row per run directory (accuracies as fractions, as in summary.json;
    ``test_acc_ci_low``/``_high``: the directory's Wilson 95 % interval,
    :func:`record_test_interval`; the references and differences are in
    ``reproduction.csv``)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for g in groups:
            for r in g.records:
                row = {k: r.get(k) for k in CSV_FIELDS}
                row.update(study=r.study_name, run=g.label, dir=str(r.path), status=r.status,
                           profile=r.profile, limited=r.limited, error=r.error_line or None)
                interval = record_test_interval(r) if r.status == "finished" else None
                if interval is not None:  # this directory's Wilson 95 % interval
                    row.update(test_acc_ci_low=round(interval[0], 6),
                               test_acc_ci_high=round(interval[1], 6))
                writer.writerow(row)
    return path
