"""Shared helpers for the benchmark scripts: environment record and result files.

Every benchmark prints what it measured and writes one JSON file under
``benchmarks/results/`` holding the numbers plus where they came from (device, CPU,
thread count, library versions, git commit, date).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from cnnbench.devices import cpu_identity, cpu_name  # the same CPU name and commit the runs record
from cnnbench.training.machine import git_commit as run_git_commit
from cnnbench.training.machine import package_version  # not `import torchvision`: a second of CPU

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_counters() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, this process's and its children's CPU seconds,
    wall time) now; None where /proc/stat cannot be read."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return busy, own, time.monotonic()


_START = _cpu_counters()  # a benchmark imports this module first: its lifetime starts here


def machine_load() -> dict:
    """How busy the machine was with other work while this benchmark ran (measured, not
    asserted): the CPU seconds of every other process since the benchmark started, as a share
    of all cores' time. ``otherwise_idle`` when that share is under 5%."""
    now = _cpu_counters()
    if _START is None or now is None or now[2] <= _START[2]:
        return {"other_cpu_share": None, "otherwise_idle": None}
    others = max(0.0, (now[0] - _START[0]) - (now[1] - _START[1]))
    share = others / ((now[2] - _START[2]) * (os.cpu_count() or 1))
    return {"other_cpu_share": round(share, 4), "otherwise_idle": share < 0.05}


def git_commit() -> str:
    return run_git_commit() or "unknown"


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {cpu_name()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} threads)"


def environment(device: str = "cpu") -> dict:
    return {
        "device": device,
        "device_name": device_description(device),
        # family, model, stepping and bf16 flags: this project's VM is not always the same CPU,
        # and two "AMD EPYC" days can differ twofold in bf16 speed
        "cpu_identity": cpu_identity(),
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "torchvision_version": package_version("torchvision"),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "machine_load": machine_load(),
    }


def result_path(name: str, device: str = "cpu", results_dir: str | Path | None = None) -> Path:
    """``<results_dir or benchmarks/results>/<name>-<cpu|cuda>.json``."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return Path(results_dir or RESULTS_DIR) / f"{name}-{kind}.json"


def write_result(name: str, payload: dict, device: str = "cpu",
                 results_dir: str | Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>-<device>.json`` (or the same name under
    ``results_dir``, e.g. for smoke runs that must not replace the committed results) and
    return its path."""
    path = result_path(name, device, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "environment": environment(device), **payload}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def run_main(main) -> None:
    """Run a benchmark's ``main()`` and exit with its status; a user's mistake (a
    :class:`cnnbench.errors.UserError`: missing data, a bad option) ends in one line, as in
    the CLI (the same guard)."""
    from cnnbench.cli import guarded

    raise SystemExit(guarded(main, Path(sys.argv[0]).name))


def resolve_recipe(recipe: str, dataset: str, values: dict):
    """The TrainConfig of ``recipe`` (``none``: the plain defaults) on ``dataset`` with
    ``values`` on top, resolved exactly as ``cnnbench train`` resolves its flags."""
    from cnnbench.config.resolve import resolve_config

    values = {"dataset": dataset, **values}
    if recipe.lower() != "none":
        values["recipe"] = recipe
    return resolve_config(values)


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["epochs=1", "limit_train=512"]`` -> ``{"epochs": "1", "limit_train": "512"}``
    (values stay strings: ``TrainConfig`` parses them like flags)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set needs KEY=VALUE (a TrainConfig option), got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
