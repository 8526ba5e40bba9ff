"""The study file: reading one, checking its keys, expanding grids and resolving every run's
``train`` options for a profile and a number of seeds (the format: :mod:`cnnbench.studies`)."""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.config import TrainConfig
from cnnbench.data.specs import variants
from cnnbench.errors import UserError
from cnnbench.studies.fields import (Choice, Curve, Reference, parse_choices, check_keys, flag, mapping, parse_curves,
                                     parse_differs, parse_references)

STUDY_DIR = Path(__file__).parent  # the shipped study files, *.yaml beside this module
PROFILES = ("quick", "cpu", "full")

# The CIFAR-10 variants a study may swap with `--dataset` (same classes, same image size).
CIFAR10_VARIANTS = variants("cifar10")  # CIFAR-10 and its registered stand-ins

_STUDY_KEYS = {"name", "description", "report", "notes", "seeds", "grid_table", "model_aliases",
               "defaults", "profiles", "runs", "choices"}
_RUN_KEYS = {"name", "init", "reference", "step", "ablation", "grid", "profiles", "note", "once",
             "differs", "curves"}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study, for one seed: its directory name, options and report labels."""

    name: str                    # directory name: the base name, plus -seed<k> with several seeds
    base: str                    # the run's name in the study file (seeds share it)
    options: dict                # resolved `train` options
    # the report's recipe for this run: its options in the full profile, without --set or
    # --dataset; the report compares `options` with it key by key (like for like or not)
    recipe: dict = field(default_factory=dict)
    profile_recipe: dict = field(default_factory=dict)  # the same in this run's profile
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
    curves: tuple[Curve, ...] = ()  # the report's per-epoch series for this run (`curves:`)

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
            "curves": [c.to_dict() for c in self.curves],
            "options": dict(self.options), "recipe": dict(self.recipe),
            "profile_recipe": dict(self.profile_recipe),
            "choices": [c.to_dict() for c in study.choices if c.applies_to(self.base)],
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
    choices: tuple[Choice, ...] = ()  # what changes results that the report did not choose

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
    check_keys(raw, _STUDY_KEYS, where)
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    name = str(raw.get("name") or path.stem)
    defaults = mapping(raw.get("defaults"), f"{where}: defaults")
    profiles = mapping(raw.get("profiles"), f"{where}: profiles")
    for key in profiles:
        if key not in PROFILES:
            raise UserError(f"{where}: unknown profile {key!r}; profiles are "
                            f"{', '.join(PROFILES)}")
    mapping(profiles.get(profile), f"{where}: profiles.{profile}")  # checked before any run
    n_seeds = int(seeds if seeds is not None else raw.get("seeds", 1))
    if n_seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {n_seeds}")
    grid_table = raw.get("grid_table")
    if grid_table is not None and set(mapping(grid_table, f"{where}: grid_table")) != {"rows", "cols"}:
        raise UserError(f"{where}: grid_table needs exactly `rows` and `cols` (grid axis names)")
    aliases = {str(k): str(v) for k, v in
               mapping(raw.get("model_aliases"), f"{where}: model_aliases").items()}
    entries = raw.get("runs")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{where}: `runs` must be a non-empty list")

    choices = parse_choices(raw.get("choices"), where)
    bases: list[dict] = []  # one per run of the file, after grid expansion
    for i, entry in enumerate(entries):
        bases.extend(_expand_entry(mapping(entry, f"{where}: runs[{i}]"), f"{where}: runs[{i}]"))
    names = [b["name"] for b in bases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{where}: duplicate run names {duplicates}; give grid runs a name "
                        "template such as '{model}-{optimizer}'")
    for i, choice in enumerate(choices):
        unknown = [p for p in choice.runs if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unknown:
            raise UserError(f"{where}: choices[{i}] ({choice.what}): runs {unknown} match no run "
                            f"of this study; runs: {', '.join(names)}")
    for b in bases:
        if b["init"] is not None and b["init"] not in names:
            raise UserError(f"{where}: run {b['name']!r} has init {b['init']!r}, which is not "
                            "a run of this study")

    def options_for(b: dict, profile: str, overrides: dict) -> dict:
        # a run's own entry for the profile replaces the study's entry for that run
        entry = (mapping(b["profiles"][profile], f"{where}: {b['name']}.profiles.{profile}")
                 if profile in b["profiles"]
                 else mapping(profiles.get(profile), f"{where}: profiles.{profile}"))
        options = {**defaults, **b["options"], **{k: v for k, v in entry.items() if k != "cap"}}
        for key, cap in mapping(entry.get("cap"), f"{where}: {profile} cap").items():
            options[key] = _capped(key, options.get(key), cap)
        options.update(overrides)
        if isinstance(options.get("model"), str) and options["model"] in aliases:
            options["model"] = aliases[options["model"]]  # the report's own spelling
        if options.get("batch_schedule"):  # the schedule fixes the number of epochs
            options.pop("epochs", None)
        options["profile"] = profile
        return options

    resolved = []
    recipes = {}  # run name -> the report's recipe: the full profile, no --set, no --dataset
    for b in bases:
        options = options_for(b, profile, overrides or {})
        if data_dir is not None:
            options["data_dir"] = str(data_dir)
        resolved.append((b, options))
        # the report's recipe, and this profile's version of it (what --set/--dataset change)
        recipes[b["name"]] = (options_for(b, "full", {}), options_for(b, profile, {}))
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
                recipe=recipes[b["name"]][0], profile_recipe=recipes[b["name"]][1],
                seed_index=k, init=init, references=b["references"], differs=b["differs"],
                step=b["step"],
                step_index=step_index, ablation=ablation, axes=b["axes"], note=b["note"],
                position=len(runs), curves=b["curves"]))
    return Study(name=name, description=str(raw.get("description", "")).strip(),
                 report=str(raw.get("report", "")).strip(),
                 notes=tuple(str(n) for n in (raw.get("notes") or ())), profile=profile,
                 seeds=n_seeds, grid_table=grid_table, runs=tuple(order_runs(runs)), source=path,
                 choices=choices)


def _expand_entry(entry: dict, where: str) -> list[dict]:
    """One study-file run entry -> one dict per run (several for a ``grid:`` entry)."""
    if "name" not in entry:
        raise UserError(f"{where}: every run needs a `name`")
    meta = {k: entry.get(k) for k in _RUN_KEYS}
    options = {k: v for k, v in entry.items() if k not in _RUN_KEYS}
    refs = parse_references(entry.get("reference"), f"{where}: reference")
    departs = parse_differs(entry.get("differs"), f"{where}: differs")
    curves = parse_curves(entry.get("curves"), f"{where} (run {entry['name']}): curves")
    grid = mapping(meta["grid"], f"{where}: grid")
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
                profs = mapping(value.get("profiles"), f"{where}: grid.{axis}.profiles")
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
            "references": refs, "differs": departs, "step": None if meta["step"] is None else str(meta["step"]),
            "curves": curves,
            "ablation": meta["ablation"], "axes": labels, "note": str(meta["note"] or ""),
            "once": flag(meta["once"], f"{where}: once"),
            "profiles": {**mapping(meta["profiles"], f"{where}: profiles"), **grid_profiles},
        })
    return runs


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
    from cnnbench.config.resolve import resolve_config  # checks names: imports the models

    try:
        return resolve_config(options, default_recipe=None)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None

