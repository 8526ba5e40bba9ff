"""The run directory: its files, written by a training run and read by studies and reports.

A run directory (default ``runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>``) holds:

``config.yaml``            the fully resolved config (``TrainConfig.to_dict()``)
``metrics.jsonl``          one line per epoch
``train_steps.jsonl``      the training loss every ``log_every`` steps
``summary.json``           the run's result (docs/architecture.md, Runs, lists every key)
``events.out.tfevents.*``  TensorBoard
``last.ckpt``, ``best.ckpt``   checkpoints (:mod:`cnnbench.training.checkpoint`)
``test_predictions.json``  the test set's predictions and targets
``misclassified.pt``       a gallery of misclassified test images (:func:`save_misclassified`)
``error.txt``              why a run failed
``study.json``             written by the study runner: the study and run it belongs to

JSON files are written atomically (temp file, rename); readers tolerate missing files and a
last line cut short by a killed run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import time
from pathlib import Path

import yaml

from cnnbench.config import RESUMABLE_CHANGES, TrainConfig, dump_yaml
from cnnbench.data.cache import read_json  # noqa: F401  (the run files are read with it: rundir.read_json)
from cnnbench.errors import UserError
from cnnbench.training.checkpoint import BEST, LAST

CONFIG, METRICS, STEPS, SUMMARY = "config.yaml", "metrics.jsonl", "train_steps.jsonl", "summary.json"
ERROR, STUDY, PREDICTIONS, MISCLASSIFIED = "error.txt", "study.json", "test_predictions.json", "misclassified.pt"
TRAIN_LOG = "train.log"  # what the run said on the console, also when it ran --quiet
# written by `eval --corruptions` and `eval --latency` (and `study run --corruptions --latency`)
CORRUPTIONS_FILE, LATENCY_FILE = "corruptions.json", "latency.json"


def now() -> str:
    """The local time with its offset, to the second (``started_at``, ``finished_at``)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_json(path: str | Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's ``summary.json``, or ``None`` when it has none."""
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.exists() else None


def check_same_precision(run_dir: Path, asked: str, resolved: str) -> None:
    """``--amp auto`` resolves per machine: a run started in bf16 must not go on in fp32 (or the
    reverse) because it was resumed on another machine."""
    before = (read_summary(run_dir) or {}).get("amp")
    if asked == "auto" and before not in (None, "auto") and before != resolved:
        raise UserError(f"{run_dir} trained in {before} so far (--amp auto on the machine it "
                        f"started on), but this machine resolves --amp auto to {resolved}; resume "
                        f"it on a machine like the first, or start a new run with another --out")


def read_yaml(path: str | Path) -> dict:
    """The YAML mapping in ``path``; ``{}`` when it is missing, unreadable or not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def append_jsonl(path: str | Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a ``.jsonl`` file, skipping a line cut short by a kill."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def truncate_jsonl(path: str | Path, key: str, last: int) -> None:
    """Keep the records of ``path`` whose ``key`` is <= ``last`` (drop work after a checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if isinstance(r.get(key), (int, float)) and r[key] <= last]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken)."""
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.dataset.replace("imagefolder:", "folder-"))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{config.model}-{dataset.strip('_')}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def saved_config(run_dir: str | Path) -> TrainConfig:
    """The config a run directory was trained with (its ``config.yaml``); no run -> UserError."""
    if not Path(run_dir).exists():
        raise UserError(f"{run_dir} does not exist; --resume takes the directory of an earlier "
                        f"`cnnbench train` (e.g. runs/lenet5-mnist-...)")
    saved_path = Path(run_dir) / CONFIG
    if not saved_path.exists():
        raise UserError(f"{run_dir} holds no run to resume (no config.yaml); give the "
                        f"directory of an earlier `cnnbench train`")
    try:
        values = yaml.safe_load(saved_path.read_text()) or {}
    except (yaml.YAMLError, OSError):
        raise UserError(f"{saved_path} is unreadable or not valid YAML; the run cannot be "
                        f"resumed") from None
    return TrainConfig.from_dict(values, str(saved_path))


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What to do with a run directory (:func:`plan_run`)."""

    config: TrainConfig
    run_dir: Path
    state: str              # "finished", "interrupted" or "fresh"
    summary: dict | None    # its summary.json, if any


def run_state(run_dir: str | Path) -> tuple[str, dict | None]:
    """The one answer to "resume or finished?", for ``train``, ``study`` and the API:
    ``finished`` (its summary says so: nothing to train), ``interrupted`` (a ``last.ckpt`` to
    continue from) or ``fresh`` (nothing to continue: no directory, or no epoch completed),
    with the run's summary (``None`` without one)."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "finished":
        return "finished", summary
    return ("interrupted" if (run_dir / LAST).exists() else "fresh"), summary


def plan_run(config: TrainConfig | None, out_dir, resume: bool) -> RunPlan:
    """The run's config, directory and :func:`run_state`. A new run (``resume`` False) must not
    land on an existing run's checkpoints; a resumed one continues with its saved config,
    changed only in :data:`cnnbench.config.RESUMABLE_CHANGES` (others: one-line error)."""
    config, run_dir = prepare_run_dir(config, out_dir, resume)
    state, summary = run_state(run_dir) if resume else ("fresh", None)
    return RunPlan(config, run_dir, state, summary)


def prepare_run_dir(config: TrainConfig | None, out_dir, resume: bool) -> tuple[TrainConfig, Path]:
    """The run's config and directory; on resume the saved config (changes checked)."""
    if resume:
        target = out_dir or (config.out if config is not None else None)
        if target is None:
            raise UserError("--resume needs the run directory: --resume DIR (or --out DIR)")
        run_dir = Path(target)
        saved = saved_config(run_dir)
        if config is None:
            return saved, run_dir
        changed = [f.name for f in dataclasses.fields(TrainConfig)
                   if f.name not in RESUMABLE_CHANGES
                   and getattr(config, f.name) != getattr(saved, f.name)]
        if changed:
            raise UserError(f"--resume continues {run_dir} with its saved config, but these "
                            f"options differ: {', '.join(changed)}; drop them (or start a new "
                            f"run with another --out)")
        keep = {k: getattr(config, k) for k in RESUMABLE_CHANGES if k != "out"}
        return saved.replace(**keep), run_dir
    if config is None:
        raise UserError("train_run needs a config unless it resumes a run")
    run_dir = Path(out_dir or config.out or default_run_dir(config))
    for name in (LAST, BEST):
        if (run_dir / name).exists():
            raise UserError(f"{run_dir} already holds a run ({name}); pass --resume to continue "
                            f"it, or choose another --out")
    return config, run_dir


def open_run_dir(run_dir: Path, config: TrainConfig, fresh: bool) -> None:
    """Create the run directory (a fresh run: drop the logs of an earlier attempt that never
    completed an epoch) and write the resolved ``config.yaml``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        for name in (METRICS, STEPS, SUMMARY, ERROR, PREDICTIONS, TRAIN_LOG):
            (run_dir / name).unlink(missing_ok=True)
        for events in run_dir.glob("events.out.tfevents.*"):
            events.unlink()
    else:
        (run_dir / ERROR).unlink(missing_ok=True)
    (run_dir / CONFIG).write_text(dump_yaml(config))


def _event_files(run_dir: Path) -> set[str]:
    return {p.name for p in run_dir.glob("events.out.tfevents.*")}


def open_after_earlier_event_files(run_dir: str | Path, open_writer, clock=None, sleep=None):
    """``open_writer()`` (a TensorBoard writer, which creates its event file at once), its
    file sorting after those already in ``run_dir``: TensorBoard reads them in name order. Where
    the new file sorts last, as it mostly does, nothing is waited for; otherwise (the same
    second, a process id that sorts first) the writer is closed, its file removed, and it is
    opened again once :func:`after_earlier_event_files` has waited for the next second."""
    run_dir = Path(run_dir)
    earlier = _event_files(run_dir)
    writer = open_writer()
    mine = _event_files(run_dir) - earlier
    if not earlier or (mine and min(mine) > max(earlier)):
        return writer
    writer.close()
    for name in mine:
        (run_dir / name).unlink(missing_ok=True)
    after_earlier_event_files(run_dir, clock, sleep)
    return open_writer()


def after_earlier_event_files(run_dir: str | Path, clock=None, sleep=None) -> float:
    """Wait, if need be, until a TensorBoard event file opened now sorts after those already in
    ``run_dir``; the seconds waited (at most 2).

    TensorBoard reads a folder's event files in the order of their names, which begin with the
    second they were opened in, then the host and the process id (as text). A resumed run's
    file opened in the same second as the killed process's, with a host and process id that
    sort first (a resume in the process that started the killed run's job, say), would be read
    first, and the steps the resumed run purged would be read after the ones it logged. A file
    stamped more than 2 s ahead (another machine's clock, or one set back) is not waited for:
    its order stays TensorBoard's, and a warning says so."""
    clock, sleep = clock or time.time, sleep or time.sleep
    stamps = [int(part) for p in Path(run_dir).glob("events.out.tfevents.*")
              if (part := p.name.split(".")[3]).isdecimal()]
    wait = max(stamps, default=0) + 1 - clock()
    if 0 < wait <= 2:
        wait += 0.01  # past the second's boundary, not on it
        sleep(wait)
        return wait
    if wait > 2:
        logging.getLogger("cnnbench.training").warning(
            "cnnbench: warning: %s holds a TensorBoard file stamped %.0f s ahead of this "
            "machine's clock; TensorBoard may show the steps this resumed run purged", run_dir,
            wait - 1)
    return 0.0


def config_changes(run_dir: str | Path, config: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """Options of ``config`` that differ from the run's saved ``config.yaml`` (none saved: []),
    besides :data:`RESUMABLE_CHANGES` and ``ignore``."""
    saved = read_yaml(Path(run_dir) / CONFIG)
    skip = {*RESUMABLE_CHANGES, *ignore}
    return [key for key, value in config.to_dict().items()
            if key not in skip and key in saved and saved[key] != value]


def misclassified_rows(predictions, targets, limit: int = 32):
    """Up to ``limit`` positions of misclassified images, spread over the true classes: the
    first error of each class (in class order), then the second of each, and so on, so a test
    set stored in class order does not fill the gallery with one class. Deterministic: no
    random numbers. ``predictions``, ``targets``: N class indices."""
    import torch

    predictions, targets = torch.as_tensor(predictions).cpu(), torch.as_tensor(targets).cpu()
    wrong = (predictions != targets).nonzero().flatten()
    by_class = [wrong[targets[wrong] == c].tolist() for c in targets[wrong].unique().tolist()]
    picked = [errs[rank] for rank in range(max(map(len, by_class), default=0))
              for errs in by_class if rank < len(errs)][:limit]
    return torch.tensor(picked, dtype=torch.long)


def save_misclassified(run_dir: str | Path, images, predictions, targets, limit: int = 32,
                       explain=None) -> int:
    """Write up to ``limit`` misclassified test images (:func:`misclassified_rows`) to
    ``run_dir/misclassified.pt``.

    ``images``: the test images as stored (uint8 N,C,H,W, before normalisation and resizing);
    ``predictions``, ``targets``: N class indices. The file holds ``images``, ``pred``,
    ``true`` and ``index`` (position in the test set); the report draws it as a gallery.
    ``explain(rows, classes)``, if given, returns the Grad-CAM heat maps of the test images at
    ``rows`` for ``classes`` (their predicted classes): ``{"heat": uint8 N,H,W, "cam_layer":
    str, "cam_method": str}``, stored beside them (or ``None``: no heat maps).
    Returns the number of images written.
    """
    import torch

    predictions, targets = torch.as_tensor(predictions).cpu(), torch.as_tensor(targets).cpu()
    wrong = misclassified_rows(predictions, targets, limit)
    gallery = {"images": images.cpu()[wrong].contiguous(), "pred": predictions[wrong],
               "true": targets[wrong], "index": wrong}
    if explain is not None and len(wrong):
        gallery.update(explain(wrong, predictions[wrong]) or {})
    torch.save(gallery, Path(run_dir) / MISCLASSIFIED)
    return len(wrong)
