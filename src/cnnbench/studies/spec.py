"""The study file: reading one, checking its keys, expanding grids and resolving every run's
``train`` options for a profile and a number of seeds (the format: :mod:`cnnbench.studies`)."""

from __future__ import annotations

import copy
import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.config import TrainConfig
from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError

STUDY_DIR = Path(__file__).parent  # the shipped study files, *.yaml beside this module
PROFILES = ("quick", "cpu", "full")
# What a reference may quote, and its kind: accuracies in percent (fractions in the run
# files), losses as printed, times in seconds (or `unit`), parameter counts. The report reads
# cnnbench's value of each (cnnbench.report.runs.QUANTITIES; a test keeps the two in step:
# studies and report do not import each other).
REFERENCE_METRICS = {
    "test_acc": "accuracy", "val_acc": "accuracy", "best_val_acc": "accuracy",
    "max_epoch_test_acc": "accuracy", "train_acc": "accuracy",
    "test_loss": "loss", "val_loss": "loss", "train_loss": "loss",
    "epoch_time_s": "time", "train_time_s": "time", "params": "count",
}
TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}  # a time reference's `unit`, in seconds

# The CIFAR-10 variants a study may swap with `--dataset` (same classes, same image size).
CIFAR10_VARIANTS = ("cifar10", "cifar10_jpeg")

_STUDY_KEYS = {"name", "description", "report", "notes", "seeds", "grid_table", "model_aliases",
               "defaults", "profiles", "runs"}
_RUN_KEYS = {"name", "init", "reference", "step", "ablation", "grid", "profiles", "note", "once",
             "differs"}
_REFERENCE_KEYS = {"metric", "value", "unit", "wording", "source", "note", "comparable"}


@dataclass(frozen=True)
class Reference:
    """One number a lab report published for a run: ``value`` as the report printed it (an
    accuracy in percent or a ``(low, high)`` range, a time in ``unit``), where it is
    (``source``: ``"<file-number>:<line>"`` in the lab reports, ``../shared/seeds``) and
    whether cnnbench's number can be set against it (``comparable``)."""

    value: float | tuple[float, float]
    metric: str = "test_acc"
    wording: str = ""
    note: str = ""
    source: str = ""
    unit: str = ""               # times only: s, min or h
    comparable: bool = True

    @property
    def kind(self) -> str:
        """``accuracy``, ``loss``, ``time`` or ``count`` (:data:`REFERENCE_METRICS`)."""
        return REFERENCE_METRICS[self.metric]

    def to_dict(self) -> dict:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"value": value, "metric": self.metric, "unit": self.unit or None,
                "wording": self.wording, "source": self.source, "note": self.note,
                "comparable": self.comparable}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study, for one seed: its directory name, options and report labels."""

    name: str                    # directory name: the base name, plus -seed<k> with several seeds
    base: str                    # the run's name in the study file (seeds share it)
    options: dict                # resolved `train` options
    seed_index: int = 0
    init: str | None = None      # directory name of the run whose checkpoint starts this one
    references: tuple[Reference, ...] = ()
    differs: str = ""            # how the run departs from the report's recipe ("" if it does not)
    step: str | None = None      # ablation step label
    step_index: int | None = None
    ablation: str | None = None  # which ablation table the step belongs to
    axes: dict = field(default_factory=dict)   # grid labels, e.g. {"model": .., "optimizer": ..}
    note: str = ""
    position: int = 0            # place in the study file (the report lists runs in this order)

    def meta(self, study: "Study") -> dict:
        """What the runner writes to ``study.json`` in the run directory."""
        return {
            "study": study.name, "study_description": study.description,
            "study_report": study.report, "study_notes": list(study.notes),
            "grid_table": study.grid_table, "profile": study.profile,
            "run": self.base, "name": self.name, "seed": self.options.get("seed"),
            "seed_index": self.seed_index, "init": self.init,
            "reference": [r.to_dict() for r in self.references], "differs": self.differs or None,
            "step": self.step, "step_index": self.step_index, "ablation": self.ablation,
            "axes": dict(self.axes), "note": self.note, "position": self.position,
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class Study:
    """A study file resolved for one profile and seed count."""

    name: str
    description: str
    report: str
    notes: tuple[str, ...]
    profile: str
    seeds: int
    grid_table: dict | None
    runs: tuple[StudyRun, ...]
    source: Path

    def where(self, run: StudyRun) -> str:
        """How a one-line error names ``run`` (``"<study>: run <name>"``)."""
        return f"{self.name}: run {run.name}"


# --------------------------------------------------------------------------- finding studies

def list_studies() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped study, sorted by name."""
    out = []
    for path in sorted(STUDY_DIR.glob("*.yaml")):
        raw = _read_study_file(path)
        out.append((str(raw.get("name", path.stem)), str(raw.get("description", "")).strip()))
    return out


def find_study(name_or_path: str | Path) -> Path:
    """The YAML file of a shipped study name, or an existing ``.yaml`` path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"study file {path} not found")
        return path
    shipped = STUDY_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(name for name, _ in list_studies())
    raise UserError(f"unknown study {str(name_or_path)!r}; shipped studies: {names} "
                    "(or pass a path to a study .yaml file)")


def _read_study_file(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a study file must be a YAML mapping")
    return raw


# --------------------------------------------------------------------------- resolving a study

def load_study(name_or_path: str | Path, *, profile: str = "full", seeds: int | None = None,
               dataset: str | None = None, overrides: dict | None = None,
               data_dir: str | None = None) -> Study:
    """Read a study and resolve every run's options for ``profile`` and ``seeds``.

    ``dataset`` swaps the runs' dataset: a CIFAR-10 variant swaps the CIFAR-10 runs (the
    only choice in a study that uses several datasets), another name swaps the dataset of
    a single-dataset study. ``overrides`` (``--set``) win over everything.
    """
    path = find_study(name_or_path)
    raw = _read_study_file(path)
    where = str(path)
    _check_keys(raw, _STUDY_KEYS, where)
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    name = str(raw.get("name") or path.stem)
    defaults = _mapping(raw.get("defaults"), f"{where}: defaults")
    profiles = _mapping(raw.get("profiles"), f"{where}: profiles")
    for key in profiles:
        if key not in PROFILES:
            raise UserError(f"{where}: unknown profile {key!r}; profiles are "
                            f"{', '.join(PROFILES)}")
    study_profile = _mapping(profiles.get(profile), f"{where}: profiles.{profile}")
    n_seeds = int(seeds if seeds is not None else raw.get("seeds", 1))
    if n_seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {n_seeds}")
    grid_table = raw.get("grid_table")
    if grid_table is not None and set(_mapping(grid_table, f"{where}: grid_table")) != {"rows", "cols"}:
        raise UserError(f"{where}: grid_table needs exactly `rows` and `cols` (grid axis names)")
    aliases = {str(k): str(v) for k, v in
               _mapping(raw.get("model_aliases"), f"{where}: model_aliases").items()}
    entries = raw.get("runs")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{where}: `runs` must be a non-empty list")

    bases: list[dict] = []  # one per run of the file, after grid expansion
    for i, entry in enumerate(entries):
        bases.extend(_expand_entry(_mapping(entry, f"{where}: runs[{i}]"), f"{where}: runs[{i}]"))
    names = [b["name"] for b in bases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{where}: duplicate run names {duplicates}; give grid runs a name "
                        "template such as '{model}-{optimizer}'")
    for b in bases:
        if b["init"] is not None and b["init"] not in names:
            raise UserError(f"{where}: run {b['name']!r} has init {b['init']!r}, which is not "
                            "a run of this study")

    resolved = []
    for b in bases:
        # a run's own entry for the profile replaces the study's entry for that run
        entry = (_mapping(b["profiles"][profile], f"{where}: {b['name']}.profiles.{profile}")
                 if profile in b["profiles"] else study_profile)
        options = {**defaults, **b["options"], **{k: v for k, v in entry.items() if k != "cap"}}
        for key, cap in _mapping(entry.get("cap"), f"{where}: {profile} cap").items():
            options[key] = _capped(key, options.get(key), cap)
        options.update(overrides or {})
        if isinstance(options.get("model"), str) and options["model"] in aliases:
            options["model"] = aliases[options["model"]]  # the report's own spelling
        if data_dir is not None:
            options["data_dir"] = str(data_dir)
        if options.get("batch_schedule"):  # the schedule fixes the number of epochs
            options.pop("epochs", None)
        options["profile"] = profile
        resolved.append((b, options))
    _swap_dataset(resolved, dataset, where)

    runs = []
    step_counts: dict[str, int] = {}
    for b, options in resolved:
        step_index = None
        ablation = None
        if b["step"] is not None:
            ablation = str(b["ablation"] or name)
            step_index = step_counts.get(ablation, 0)
            step_counts[ablation] = step_index + 1
        base_seed = int(options.get("seed", 0) or 0)
        for k in range(1 if b["once"] else n_seeds):
            run_name = (b["name"] if n_seeds == 1 or b["once"]
                        else f"{b['name']}-seed{base_seed + k}")
            init = None
            if b["init"] is not None:
                dep_base, dep = next((d, o) for d, o in resolved if d["name"] == b["init"])
                dep_seed = int(dep.get("seed", 0) or 0) + k
                init = (b["init"] if n_seeds == 1 or dep_base["once"]
                        else f"{b['init']}-seed{dep_seed}")
            runs.append(StudyRun(
                name=run_name, base=b["name"], options={**options, "seed": base_seed + k},
                seed_index=k, init=init, references=b["references"], differs=b["differs"],
                step=b["step"],
                step_index=step_index, ablation=ablation, axes=b["axes"], note=b["note"],
                position=len(runs)))
    return Study(name=name, description=str(raw.get("description", "")).strip(),
                 report=str(raw.get("report", "")).strip(),
                 notes=tuple(str(n) for n in (raw.get("notes") or ())), profile=profile,
                 seeds=n_seeds, grid_table=grid_table, runs=tuple(order_runs(runs)), source=path)


def _expand_entry(entry: dict, where: str) -> list[dict]:
    """One study-file run entry -> one dict per run (several for a ``grid:`` entry)."""
    if "name" not in entry:
        raise UserError(f"{where}: every run needs a `name`")
    meta = {k: entry.get(k) for k in _RUN_KEYS}
    options = {k: v for k, v in entry.items() if k not in _RUN_KEYS}
    references = _references(entry.get("reference"), f"{where}: reference")
    differs = _differs(entry.get("differs"), f"{where}: differs")
    grid = _mapping(meta["grid"], f"{where}: grid")
    combos: list[tuple[dict, dict, dict]] = [({}, {}, {})]  # (axis labels, options, profiles)
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: grid.{axis} must be a non-empty list")
        expanded = []
        for value in values:
            if isinstance(value, dict):
                if "label" not in value:
                    raise UserError(f"{where}: grid.{axis} entries that are mappings need a "
                                    "`label` (used in the run name and the tables)")
                label = str(value["label"])
                opts = {k: v for k, v in value.items() if k not in ("label", "profiles")}
                profs = _mapping(value.get("profiles"), f"{where}: grid.{axis}.profiles")
            else:
                label, opts, profs = str(value), {axis: value}, {}
            expanded.append((label, opts, profs))
        combos = [({**labels, axis: label}, {**opts, **more}, {**profs, **more_profs})
                  for labels, opts, profs in combos for label, more, more_profs in expanded]
    runs = []
    for labels, grid_opts, grid_profiles in combos:
        try:
            name = str(entry["name"]).format(**labels)
        except (KeyError, IndexError) as exc:
            raise UserError(f"{where}: run name {entry['name']!r} uses {exc}, which is not a "
                            "grid axis") from None
        runs.append({
            "name": name, "options": {**copy.deepcopy(options), **copy.deepcopy(grid_opts)},
            "init": None if meta["init"] is None else str(meta["init"]).format(**labels),
            "references": references, "differs": differs, "step": None if meta["step"] is None else str(meta["step"]),
            "ablation": meta["ablation"], "axes": labels, "note": str(meta["note"] or ""),
            "once": _flag(meta["once"], f"{where}: once"),
            "profiles": {**_mapping(meta["profiles"], f"{where}: profiles"), **grid_profiles},
        })
    return runs


def _flag(raw: Any, where: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise UserError(f"{where} must be true or false, got {raw!r}")
    return raw


def _references(raw: Any, where: str) -> tuple[Reference, ...]:
    """A run's ``reference:``: a list of mappings (one mapping alone is a list of one)."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        return (_reference(raw, where),)
    if not isinstance(raw, list):
        raise UserError(f"{where} must be a list of mappings such as "
                        "{metric: test_acc, value: 97.02, source: \"000:797\"}")
    return tuple(_reference(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _reference(raw: Any, where: str) -> Reference:
    raw = _mapping(raw, where)
    _check_keys(raw, _REFERENCE_KEYS, where)
    metric = raw.get("metric", "test_acc")
    if metric not in REFERENCE_METRICS:
        raise UserError(f"{where}: unknown metric {metric!r}; choose one of "
                        f"{', '.join(REFERENCE_METRICS)}")
    kind = REFERENCE_METRICS[metric]
    where = f"{where} ({metric})"
    value = raw.get("value")
    if isinstance(value, list) and kind == "accuracy":
        if len(value) != 2 or not all(_is_number(v) for v in value) or value[0] > value[1]:
            raise UserError(f"{where}: a range must be [low, high], two numbers in percent, "
                            f"got {value!r}")
        value = (float(value[0]), float(value[1]))
    elif isinstance(value, list):
        raise UserError(f"{where}: a range [low, high] is only for accuracies; give the one "
                        "number the report printed")
    elif _is_number(value):
        value = float(value)
    else:
        raise UserError(f"{where}: value must be a number"
                        + (" in percent or [low, high]" if kind == "accuracy" else "")
                        + f", got {value!r}")
    for v in value if isinstance(value, tuple) else (value,):
        if kind == "accuracy" and not 0 <= v <= 100:
            raise UserError(f"{where}: an accuracy is in percent (0 to 100), got {v:g}")
        if v < 0:
            raise UserError(f"{where}: value must not be negative, got {v:g}")
    unit = raw.get("unit")
    if unit is not None and kind != "time":
        raise UserError(f"{where}: unit is only for times (epoch_time_s, train_time_s)")
    if kind == "time":
        unit = "s" if unit is None else unit
        if unit not in TIME_UNITS:
            raise UserError(f"{where}: unknown unit {unit!r}; use {', '.join(TIME_UNITS)}")
    source = raw.get("source")
    if source is not None and not (isinstance(source, str)
                                   and re.fullmatch(r"\d+:\d+(-\d+)?", source)):
        raise UserError(f"{where}: source must be a quoted \"<file-number>:<line>\" such as "
                        f"\"000:797\" (line 797 of ../shared/seeds/000_*.txt), got {source!r}")
    comparable = raw.get("comparable", kind in ("accuracy", "count"))
    if not isinstance(comparable, bool):
        raise UserError(f"{where}: comparable must be true or false, got {comparable!r}")
    return Reference(value=value, metric=metric, wording=str(raw.get("wording") or ""),
                     note=str(raw.get("note") or ""), source=source or "", unit=unit or "",
                     comparable=comparable)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _differs(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or not raw.strip():
        raise UserError(f"{where} must be a sentence saying how the run departs from the "
                        f"report's recipe, got {raw!r}")
    return raw.strip()


def _capped(key: str, value: Any, cap: Any) -> Any:
    """``min(value, cap)``; an unset option counts as its default, an unset limit as none."""
    if value is None:
        spec = TrainConfig.__dataclass_fields__.get(key)
        value = spec.default if spec is not None else None
    if cap is None:
        return value
    if value in (None, 0):
        return cap
    return min(value, cap)


def _swap_dataset(resolved: list[tuple[dict, dict]], dataset: str | None, where: str) -> None:
    if dataset is None:
        return
    used = sorted({o.get("dataset") for _, o in resolved if o.get("dataset")})
    cifar_runs = [o for _, o in resolved if o.get("dataset") in CIFAR10_VARIANTS]
    if dataset in CIFAR10_VARIANTS and cifar_runs:
        for options in cifar_runs:
            options["dataset"] = dataset
    elif len(used) <= 1:
        for _, options in resolved:
            options["dataset"] = dataset
    else:
        raise UserError(f"{where} uses several datasets ({', '.join(used)}); --dataset can only "
                        f"choose the CIFAR-10 variant ({' or '.join(CIFAR10_VARIANTS)})")


def _check_keys(raw: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(sorted(allowed))}")


def _mapping(raw: Any, where: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping")
    return raw


def order_runs(runs: list[StudyRun]) -> list[StudyRun]:
    """Runs in file order, except that each run comes after the run it starts from."""
    by_name = {r.name: r for r in runs}
    done: set[str] = set()
    ordered: list[StudyRun] = []

    def visit(run: StudyRun, chain: tuple[str, ...]) -> None:
        if run.name in done:
            return
        if run.name in chain:
            raise UserError("runs start from each other in a cycle: "
                            + " -> ".join((*chain, run.name)))
        if run.init is not None:
            visit(by_name[run.init], (*chain, run.name))
        done.add(run.name)
        ordered.append(run)

    for run in runs:
        visit(run, ())
    return ordered


def select_runs(study: Study, patterns: list[str] | None) -> list[StudyRun]:
    """The runs matching any of ``patterns`` (fnmatch, on run or base name), with their inits."""
    if not patterns:
        return list(study.runs)
    by_name = {r.name: r for r in study.runs}
    wanted = {r.name for r in study.runs
              if any(fnmatch.fnmatchcase(r.name, p) or fnmatch.fnmatchcase(r.base, p)
                     for p in patterns)}
    if not wanted:
        raise UserError(f"--only {' '.join(patterns)} matches no run of study {study.name}; "
                        f"runs: {', '.join(r.name for r in study.runs)}")
    for name in list(wanted):
        while by_name[name].init is not None:
            name = by_name[name].init
            wanted.add(name)
    return [r for r in study.runs if r.name in wanted]


# --------------------------------------------------------------------------- configs

def build_config(options: dict, where: str = "study") -> TrainConfig:
    """The run's :class:`~cnnbench.config.TrainConfig`: its recipe, then the study's options
    (the plain defaults unless the run names a recipe); a bad option raises
    :class:`UserError` prefixed with ``where`` (e.g. :meth:`Study.where`)."""
    try:
        return resolve_config(options, default_recipe=None)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None

