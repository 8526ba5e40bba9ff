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
import subprocess
from pathlib import Path

import torch
import torchvision

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {cpu_name()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} threads)"


def environment(device: str = "cpu") -> dict:
    return {
        "device": device,
        "device_name": device_description(device),
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
    }


def write_result(name: str, payload: dict, device: str = "cpu") -> Path:
    """Write ``benchmarks/results/<name>-<device>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    path = RESULTS_DIR / f"{name}-{kind}.json"
    record = {"benchmark": name, "environment": environment(device), **payload}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path
