"""The machine a run uses and records: device, seeds, determinism, CPU name, git commit."""

from __future__ import annotations

import ctypes
import functools
import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from cnnbench.devices import resolve_device  # noqa: F401  (re-exported)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024           # glibc's largest mmap threshold on 64 bits


def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing freed memory back to the kernel (Linux/glibc only;
    elsewhere nothing happens and False is returned).

    PyTorch's CPU allocator is plain ``malloc``. A training step frees and allocates the same
    activation and gradient buffers again; glibc serves blocks above its mmap threshold with
    fresh ``mmap`` pages and trims the top of its heap when much is free, so a step can make the
    kernel map and zero megabytes anew (minor page faults) instead of reusing them. Raising
    both thresholds (as the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment
    variables would at start-up) keeps the buffers in the process; the dataset tensors above
    32 MB are still mapped once."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


# -- threads on a machine other jobs already use ---------------------------------------------

LOAD_WINDOW_S = 0.15   # how long the start of a run watches the other processes' CPU use
_default_threads: int | None = None  # PyTorch's thread count when this process first asked


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, all) clock ticks of every core since boot (``/proc/stat``); None where there
    is no such file. Busy: user, nice, system, irq and softirq (not idle, iowait or the time
    a hypervisor gave to other machines)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq = fields
    return user + nice + system + irq + softirq, sum(fields)


def busy_cores(window_s: float = LOAD_WINDOW_S) -> float | None:
    """How many cores other processes kept busy during the last ``window_s`` seconds (this
    process sleeps meanwhile); None where it cannot be read."""
    first = _cpu_ticks()
    time.sleep(window_s)
    last = _cpu_ticks()
    if first is None or last is None or last[1] <= first[1]:
        return None
    return (last[0] - first[0]) / (last[1] - first[1]) * (os.cpu_count() or 1)


def pick_threads(default: int, cores: int, busy: float) -> int:
    """Threads for a run that would use ``default`` threads on a machine of ``cores`` cores of
    which other processes keep ``busy`` busy: its share of the free cores, at least one.
    Threads that compete with another job for the same cores spin and wait on each other: a
    LeNet-5 epoch beside a second 2-thread PyTorch job on 2 cores took up to 20x as long."""
    free = max(0.0, cores - busy)
    return max(1, min(default, round(default * free / cores)))


def match_threads_to_load(read=None) -> str | None:
    """Set PyTorch's threads for a run with ``num_threads`` 0 (auto) from the machine's load:
    all of the process's default threads on an idle machine, fewer where other processes
    already keep cores busy (:func:`pick_threads`). Returns the one line that says so, or None
    when the default stands (an idle machine, one thread, or a load that cannot be read)."""
    global _default_threads
    if _default_threads is None:
        _default_threads = torch.get_num_threads()
    default = _default_threads
    threads = default
    busy = (read or busy_cores)() if default > 1 else None
    cores = os.cpu_count() or default
    if busy is not None:
        threads = pick_threads(default, cores, busy)
    torch.set_num_threads(threads)  # also back to the default after a busy moment
    if threads == default:
        return None
    return (f"other processes keep {busy:.1f} of {cores} cores busy: training with {threads} "
            f"thread{'s' * (threads != 1)} instead of {default} (threads that compete for cores "
            f"slow both jobs many times over); --num-threads {default} uses all {default}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(on: bool) -> None:
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if on or torch.are_deterministic_algorithms_enabled():
        # the call imports torch._inductor (about a second of a run's start): only when it
        # changes something
        torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


# Measured results, not code: a benchmark that writes one result and then measures the next
# (or a study run beside committed results) still runs the commit's code.
RESULT_PATHS = ("benchmarks/results", "results")


def git_commit(where: str | Path | None = None) -> str | None:
    """The short commit of the cnnbench checkout (or of the checkout holding ``where``), with
    ``-dirty`` when tracked files other than the measured results (:data:`RESULT_PATHS`) are
    modified; ``None`` outside a git checkout, or where git could not be asked. cnnbench's own
    is asked once per process (a test suite or a study records hundreds of runs, each asking git
    twice): the commit the process started with. An answer git could not give (no git, a
    timeout on a busy machine) is not kept: the next run asks again."""
    try:
        if where is None:
            return _own_commit()
        return _ask_git(Path(where))
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def _own_commit() -> str | None:
    return _ask_git(Path(__file__).resolve().parent)  # an exception is not cached


def _ask_git(here: Path) -> str | None:
    """The commit of the checkout holding ``here`` (``None`` outside one); raises where git
    could not be asked."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=here, timeout=5)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    code = [":/", *(f":(top,exclude){p}" for p in RESULT_PATHS)]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *code],
                           capture_output=True, text=True, cwd=here, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def package_version(name: str) -> str | None:
    """An installed package's version, read from its metadata without importing it (importing
    torchvision costs about a second: its ops load torch._dynamo)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
