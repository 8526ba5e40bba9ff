"""Studies: one YAML file -> the runs of one lab report's experiment, run in order.

A study names a set of ``train`` runs, each with its own recipe, and the number the lab
report published for it. ``cnnbench study run NAME --out DIR`` trains every run into
``DIR/<run>/`` (a normal run directory, see docs/architecture.md) and writes the report.

Study file (the shipped ones are ``cnnbench/studies/*.yaml``)::

    name: cifar10-tricks
    description: one line for `cnnbench study list`
    report: which lab report this reproduces and how it ran its experiment
    notes: [what the recipe takes from the report, what was chosen here]
    seeds: 1                    # seeds per run (`--seeds N` overrides): seed, seed+1, ...
    grid_table: {rows: model, cols: optimizer}   # optional model x variant table
    defaults: {optimizer: sgd, momentum: 0.9}    # `train` options shared by all runs
    profiles:                   # what each profile changes in every run
      quick: {epochs: 1, limit_train: 256, limit_eval: 256}
      cpu: {cap: {epochs: 3, limit_train: 10000}}   # `cap:` lowers a value, never raises it
      full: {}
    runs:
      - name: simple-cnn
        model: simple_cnn       # any `train` option, per run
        step: baseline          # a cumulative ablation step: the row label, in file order
        reference: {value: 64.0, metric: test_acc, wording: "...", note: "..."}
        profiles: {cpu: {}}     # this run's own entry replaces the study's (here: no caps)
      - name: simple-cnn-l2
        init: simple-cnn        # start from that run's best checkpoint
        lr: 0.001
      - name: pretrain
        once: true              # one seed whatever `--seeds` says; every seed of the
                                # runs that start from it starts from this one run
      - name: "{model}-{optimizer}"    # grid: one run per combination of the axes
        grid:
          model: [lenet5, alexnet]     # scalar: the option of the axis' name
          optimizer:                   # mapping: a `label`, any options, optional `profiles`
            - {label: sgd, optimizer: sgd, lr: 0.01, momentum: 0.9}
            - {label: adagrad, optimizer: adagrad, lr: 0.01}

A run's options, later entries winning: study ``defaults`` < the run's options < its grid
values < the profile entry (the run's own entry for the profile if it has one, else the
study's; its values, then its caps) < ``--set`` overrides. With a ``batch_schedule`` the
schedule fixes the number of epochs. ``reference.value`` is in percent as the report printed
it, or ``[low, high]`` for a range; ``metric`` says what the report measured it on
(``test_acc`` or ``val_acc``); ``reference: null`` where the number is not known.

The runner (:func:`run_study`) orders runs so that every ``init`` run comes first, skips
runs whose ``summary.json`` says ``finished`` (re-running a study resumes it; a failed run
is tried again), records a failing run (``error.txt`` and a ``failed`` summary) and goes
on; a run whose ``init`` run did not finish is marked ``skipped``. Each run directory also
gets ``study.json`` (study name, profile, step, reference, ...), so the report needs
nothing but the run directories.
"""

from __future__ import annotations

import copy
import datetime as _dt
import fnmatch
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from cnnbench.errors import UserError

STUDY_DIR = Path(__file__).parent / "studies"
PROFILES = ("quick", "cpu", "full")
REFERENCE_METRICS = ("test_acc", "val_acc")
STUDY_JSON = "study.json"

# The CIFAR-10 variants a study may swap with `--dataset` (same classes, same image size).
CIFAR10_VARIANTS = ("cifar10", "cifar10_jpeg")

_STUDY_KEYS = {"name", "description", "report", "notes", "seeds", "grid_table", "defaults",
               "profiles", "runs"}
_RUN_KEYS = {"name", "init", "reference", "step", "ablation", "grid", "profiles", "note", "once"}
_REFERENCE_KEYS = {"value", "metric", "wording", "note"}


@dataclass(frozen=True)
class Reference:
    """The number a lab report published for a run (``value`` in percent, or a range)."""

    value: float | tuple[float, float]
    metric: str = "test_acc"
    wording: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"value": value, "metric": self.metric, "wording": self.wording,
                "note": self.note}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study, for one seed: its directory name, options and report labels."""

    name: str                    # directory name: the base name, plus -seed<k> with several seeds
    base: str                    # the run's name in the study file (seeds share it)
    options: dict                # resolved `train` options
    seed_index: int = 0
    init: str | None = None      # directory name of the run whose checkpoint starts this one
    reference: Reference | None = None
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
            "reference": self.reference.to_dict() if self.reference else None,
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


# --------------------------------------------------------------------------- finding studies

def list_studies() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped study, sorted by name."""
    out = []
    for path in sorted(STUDY_DIR.glob("*.yaml")):
        raw = _read_yaml(path)
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


def _read_yaml(path: Path) -> dict:
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
    raw = _read_yaml(path)
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
                seed_index=k, init=init, reference=b["reference"], step=b["step"],
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
    reference = _reference(entry.get("reference"), f"{where}: reference")
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
            "reference": reference, "step": None if meta["step"] is None else str(meta["step"]),
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


def _reference(raw: Any, where: str) -> Reference | None:
    if raw is None:
        return None
    raw = _mapping(raw, where)
    _check_keys(raw, _REFERENCE_KEYS, where)
    value = raw.get("value")
    if isinstance(value, list) and len(value) == 2:
        value = (float(value[0]), float(value[1]))
    elif isinstance(value, (int, float)):
        value = float(value)
    else:
        raise UserError(f"{where}: value must be a number in percent or [low, high]")
    metric = str(raw.get("metric", "test_acc"))
    if metric not in REFERENCE_METRICS:
        raise UserError(f"{where}: metric must be one of {', '.join(REFERENCE_METRICS)}")
    return Reference(value=value, metric=metric, wording=str(raw.get("wording", "")),
                     note=str(raw.get("note", "")))


def _capped(key: str, value: Any, cap: Any) -> Any:
    """``min(value, cap)``; an unset option counts as its default, an unset limit as none."""
    if value is None:
        from cnnbench.config import TrainConfig

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

def build_config(options: dict, where: str = "study"):
    """The run's :class:`~cnnbench.config.TrainConfig`: its recipe, then the study's options."""
    from cnnbench.config import resolve_config

    try:
        return resolve_config(options)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


# Cost model of :func:`estimate_seconds`, fitted to what 2 cores of the AMD EPYC here do in
# fp32 (README, Performance): convolution-heavy models sustain about 100 GFLOP/s (ResNet-18 with
# the CIFAR stem: 6 x 0.56 GMACs x 32 img/s = 107), and every image costs a fixed overhead on
# top (LeNet-5 on MNIST: 12,800 img/s although its FLOPs alone would allow twice that).
CPU_GFLOPS = 100.0
CPU_OVERHEAD_S = 5e-5  # per training image; a third of it per evaluated image


@dataclass(frozen=True)
class CostEstimate:
    """What a run will process and roughly how long it takes on a 2-core CPU."""

    train_images: int
    eval_images: int   # forward passes: validation every epoch and the test, times the TTA views
    macs: int          # forward MACs of one image at the training size
    seconds: float

    def text(self) -> str:
        minutes = self.seconds / 60
        when = f"{minutes:.0f} min" if minutes >= 1 else f"{self.seconds:.0f} s"
        return (f"~{when} on 2 CPU cores (estimate: {self.train_images:,} training images, "
                f"{self.eval_images:,} evaluation passes, {self.macs / 1e6:,.1f}M MACs/image)")


def estimate_seconds(options: dict, *, gflops: float = CPU_GFLOPS,
                     overhead_s: float = CPU_OVERHEAD_S, where: str = "study") -> CostEstimate | None:
    """A rough training + evaluation time of the run with ``options`` (resolved ``train``
    options) from its images and the model's MACs: 6 x MACs per training image (forward and
    backward), 2 x MACs per evaluated image and view, at ``gflops``, plus a fixed overhead per
    image. It reads no data (the official dataset sizes) and builds the model on the meta
    device. ``None`` where the dataset size is not known in advance (``imagefolder:``)."""
    from cnnbench.data.datasets import get_spec
    from cnnbench.data.specs import imagefolder_path
    from cnnbench.data.split import split_sizes
    from cnnbench.models.profile import count_macs
    from cnnbench.models import create_model
    from cnnbench.tta import TTA_VIEWS

    config = build_config(options, where)  # ``where`` names the run in a one-line error
    if imagefolder_path(config.dataset) is not None:  # its size is known only once read
        return None
    spec = get_spec(config.dataset)
    if spec.train_size is None or spec.test_size is None:
        return None
    n_train, n_val = split_sizes(spec.train_size, config.val_split)
    limit = lambda n, cap: min(n, cap) if cap else n  # noqa: E731
    n_train, n_val = limit(n_train, config.limit_train), limit(n_val, config.limit_eval)
    n_test = limit(spec.test_size, config.limit_eval)
    size = config.resize or spec.image_size[0]
    import torch

    with torch.device("meta"):
        model = create_model(config.model, num_classes=spec.num_classes, in_chans=spec.channels,
                             input_size=size, drop_rate=config.dropout, stem=config.stem,
                             **config.model_kwargs)
    macs = int(count_macs(model, (spec.channels, size, size)))
    train_images = config.epochs * n_train
    eval_images = (config.epochs * n_val + n_test) * TTA_VIEWS[config.tta]
    seconds = (train_images * (6 * macs / (gflops * 1e9) + overhead_s)
               + eval_images * (2 * macs / (gflops * 1e9) + overhead_s / 3))
    return CostEstimate(train_images, eval_images, macs, seconds)


def check_datasets(study: Study, runs: list[StudyRun]) -> None:
    """Refuse to start when a run needs the official CIFAR-10 files and they are absent."""
    cifar = [r for r in runs if r.options.get("dataset") == "cifar10"]
    if not cifar:
        return
    from cnnbench.data.cache import resolve_cache_dir, resolve_data_dir
    from cnnbench.data.sources import source_for

    data_root = resolve_data_dir(cifar[0].options.get("data_dir"))
    if source_for("cifar10").locate(data_root, resolve_cache_dir(None)) is None:
        raise UserError(f"study {study.name} trains on cifar10, whose files are not in "
                        f"{data_root} (see `cnnbench datasets`); pass --dataset cifar10_jpeg to "
                        "use the JPEG mirror instead")


# --------------------------------------------------------------------------- running

@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: ``finished``, ``failed``, ``skipped`` or ``done-before``."""

    run: StudyRun
    status: str
    run_dir: Path
    message: str = ""


TrainFn = Callable[..., dict]


def run_study(study: Study, out_dir: str | Path, *, train_fn: TrainFn | None = None,
              only: list[str] | None = None, argv: list[str] | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> list[RunOutcome]:
    """Train the study's runs into ``out_dir/<run>/``; return one outcome per run.

    ``train_fn(config, out_dir=, resume=, argv=, progress=) -> summary`` defaults to
    :func:`cnnbench.run.train_run`; tests pass a stub. Every run's config is built (and so
    validated) before the first run starts.
    """
    if train_fn is None:
        from cnnbench.run import train_run as train_fn
    out = Path(out_dir)
    runs = select_runs(study, only)
    configs = {r.name: build_config(r.options, f"{study.name}: run {r.name}") for r in runs}
    check_datasets(study, runs)
    out.mkdir(parents=True, exist_ok=True)
    _write_study_record(study, out, runs)

    status: dict[str, str] = {}
    outcomes = []
    for i, run in enumerate(runs, 1):
        run_dir = out / run.name
        head = f"[{i}/{len(runs)}] {run.name}"
        summary = read_summary(run_dir)
        config = configs[run.name]
        if run.init is not None:
            config = config.replace(init=str(out / run.init))  # its best.ckpt
        changed = recipe_changes(run_dir, config)
        if summary is not None and summary.get("status") == "finished":
            status[run.name] = "finished"
            profile = summary.get("profile") or _read_json(run_dir / STUDY_JSON).get("profile")
            note = (f"; its recipe differs from the study's now ({', '.join(changed)}): delete "
                    f"{run_dir} to train it again" if changed else "")
            log(f"{head}: finished before (profile {profile}), skipped{note}")
            outcomes.append(RunOutcome(run, "done-before", run_dir))
            continue
        _clear_failure(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STUDY_JSON).write_text(json.dumps(run.meta(study), indent=2) + "\n")
        if run.init is not None and status.get(run.init) != "finished":
            message = f"not run: the run it starts from ({run.init}) did not finish"
            _write_summary(run_dir, _stub_summary(run, study, "skipped", message))
            status[run.name] = "skipped"
            log(f"{head}: {message}")
            outcomes.append(RunOutcome(run, "skipped", run_dir, message))
            continue
        resume = (run_dir / "last.ckpt").exists()
        if resume and changed:
            log(f"{head}: the recipe changed since the interrupted attempt "
                f"({', '.join(changed)}); starting over")
            for name in ("last.ckpt", "best.ckpt"):
                (run_dir / name).unlink(missing_ok=True)
            resume = False
        log(f"{head}: training{' (resuming)' if resume else ''} -> {run_dir}")
        try:
            summary = train_fn(config, out_dir=run_dir, resume=resume, argv=argv,
                               progress=progress)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the study
            message = _one_line(exc)
            _record_failure(run_dir, run, study, exc)
            status[run.name] = "failed"
            log(f"{head}: FAILED: {message} (see {run_dir / 'error.txt'})")
            outcomes.append(RunOutcome(run, "failed", run_dir, message))
            continue
        state = (summary or {}).get("status", "finished")
        status[run.name] = state
        acc = (summary or {}).get("test_acc")
        log(f"{head}: {state}" + (f", test accuracy {100 * acc:.2f}%" if acc is not None else ""))
        outcomes.append(RunOutcome(run, state, run_dir))
    return outcomes


def recipe_changes(run_dir: Path, config) -> list[str]:
    """Options of ``config`` that differ from the run's saved ``config.yaml`` (none saved: [])."""
    from cnnbench.run import RESUMABLE_CHANGES

    path = Path(run_dir) / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text()) if path.exists() else None
    except (OSError, yaml.YAMLError):
        saved = None
    if not isinstance(saved, dict):
        return []
    ignore = {*RESUMABLE_CHANGES, "init"}  # init: a path to the run it starts from
    return [key for key, value in config.to_dict().items()
            if key not in ignore and key in saved and saved[key] != value]


def read_summary(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "summary.json"
    return _read_json(path) if path.exists() else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _write_summary(run_dir: Path, summary: dict) -> None:
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(run_dir / "summary.json")


def _stub_summary(run: StudyRun, study: Study, status: str, error: str) -> dict:
    """A summary for a run that did not produce its own: enough for the report's row."""
    opts = run.options
    return {"name": run.name, "model": opts.get("model"), "dataset": opts.get("dataset"),
            "seed": opts.get("seed"), "epochs": opts.get("epochs"), "profile": study.profile,
            "status": status, "error": error,
            "finished_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def _record_failure(run_dir: Path, run: StudyRun, study: Study, exc: BaseException) -> None:
    if not (run_dir / "error.txt").exists():
        text = (_one_line(exc) + "\n" if isinstance(exc, UserError)
                else "".join(traceback.format_exception(exc)))
        (run_dir / "error.txt").write_text(text)
    summary = read_summary(run_dir)
    if summary is None or summary.get("status") != "failed":
        merged = {**(summary or {}), **_stub_summary(run, study, "failed", _one_line(exc))}
        _write_summary(run_dir, merged)


def _clear_failure(run_dir: Path) -> None:
    """Forget a previous failed or skipped attempt before trying the run again."""
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") != "finished":
        (run_dir / "summary.json").unlink()
        (run_dir / "error.txt").unlink(missing_ok=True)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, UserError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_study_record(study: Study, out: Path, runs: list[StudyRun]) -> None:
    """``out/study.yaml``: the study as resolved for this invocation, for the record."""
    record = {"study": study.name, "source": str(study.source), "profile": study.profile,
              "seeds": study.seeds, "written_at": _dt.datetime.now().astimezone().isoformat(
                  timespec="seconds"),
              "runs": [{"name": r.name, "init": r.init, "options": r.options} for r in runs]}
    (out / "study.yaml").write_text(yaml.safe_dump(record, sort_keys=False))

