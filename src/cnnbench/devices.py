"""Which device a run uses and what it computes natively: one place for ``auto``.

``resolve_device("auto")`` is CUDA when a GPU is visible, else the CPU; ``resolve_amp("auto",
device)`` is ``bf16`` where it pays: on a CUDA GPU that multiplies bfloat16 natively (Ampere
on); on a CPU with AVX512-BF16 or AMX only where a small convolutional network was *measured* to
train at least :data:`BF16_MIN_SPEEDUP` times as fast in bf16 as in fp32
(:func:`cpu_bf16_speedup`): the instructions alone do not say it. On this project's AMD EPYC
(Zen 5) bf16 trains fastnet 1.6x as fast (benchmarks/results/model_throughput-bf16-cpu.json against
model_throughput-cpu.json); on an Intel Xeon (family 6, model 207) whose virtual machine shows
AVX512-BF16 but no AMX, the fast CIFAR recipe trained at 0.62x fp32's speed in bf16
(benchmarks/results/fast_recipe_precision-intel/).
Otherwise ``off`` (emulated bf16 would be slower, not faster). Recipes
(:mod:`cnnbench.config.recipes`) key their per-device settings by :func:`device_type`.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import platform
import time
from pathlib import Path

import torch

from cnnbench.errors import UserError

#: ``--amp auto`` on a CPU is bf16 where the probe network trains at least this many times as
#: fast in bf16 autocast as in fp32 (the probe measured 0.80 on the Intel Xeon above, cifar_cpu_time_to_acc-intel/, whose
#: recipe ran 0.62x; on the AMD EPYC the zoo's convolutional networks train 1.5-1.85x as fast in
#: bf16, model_throughput-bf16-cpu.json, the probe itself not yet measured there): a clear
#: margin over the probe's noise, so that a CPU near 1.0 keeps the exact fp32 arithmetic
BF16_MIN_SPEEDUP = 1.1
BF16_MEMO = "bf16-speed.json"  # in the cache root: one verdict per CPU and torch version
_speedups: dict[str, float] = {}  # this process's verdicts, by the same key


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; ``cuda`` without a GPU -> UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device cuda asked for, but no CUDA GPU is available; use --device cpu "
                        "or --device auto")
    return torch.device(name)


def device_type(name: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a ``--device`` value, without failing (``cuda`` on a machine
    without a GPU is still ``"cuda"``: the run itself says it cannot use it; a value that is no
    device at all is left to the config's own check, which names the valid ones)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(name).type
    except (RuntimeError, TypeError, ValueError):
        return "cpu"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:  # ROCm: the runtime knows
            return bool(torch.cuda.is_bf16_supported())
        # NVIDIA: bf16 tensor cores from compute capability 8.0 (Ampere) on; older GPUs only
        # emulate it (is_bf16_supported() says True there too), slower than fp32
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_amp(amp: str, device: torch.device) -> str:
    """``--amp auto`` -> ``bf16`` where :func:`native_bf16` and, on a CPU, where
    :func:`cpu_bf16_speedup` is at least :data:`BF16_MIN_SPEEDUP`; else ``off``. Other values
    unchanged."""
    if amp != "auto":
        return amp
    if not native_bf16(device):
        return "off"
    if device.type == "cpu" and cpu_bf16_speedup() < BF16_MIN_SPEEDUP:
        return "off"
    return "bf16"


def cpu_bf16_speedup() -> float:
    """How many times as fast :func:`measure_bf16_speedup`'s network trains in bf16 autocast as
    in fp32 on this CPU. Measured once (about half a second, at the thread count of the first
    process that asks) per CPU (:func:`cpu_identity`) and torch version, and remembered in
    ``<cache>/bf16-speed.json``: every run, every process of a job, a resumed run and an
    evaluation on this machine decide alike. Processes that ask at once wait for the first to
    measure (a lock file beside the memo), and the first verdict stored is the one kept. A
    cache that cannot be written only costs the measurement again; a probe that fails reads as
    0 (fp32) and is not stored."""
    key = f"{cpu_identity()} | torch {torch.__version__}"
    if key not in _speedups:
        from cnnbench.data.cache import atomic_write_bytes, read_json, resolve_cache_dir

        path = resolve_cache_dir() / BF16_MEMO
        with _locked(path.with_name(BF16_MEMO + ".lock")):
            entry = read_json(path).get(key)
            if not (isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float))):
                try:
                    entry = {"speedup": round(measure_bf16_speedup(), 3),
                             "threads": torch.get_num_threads(),
                             "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                except RuntimeError:  # the probe cannot run here: fp32, not stored
                    _speedups[key] = 0.0
                    return 0.0
                stored = {key: entry, **read_json(path)}  # another process's verdict stays
                entry = stored[key]
                try:
                    atomic_write_bytes(path, json.dumps(stored, indent=1, sort_keys=True).encode())
                except OSError:
                    pass
        _speedups[key] = float(entry["speedup"])
    return _speedups[key]


def cpu_identity() -> str:
    """What tells one CPU from another for :func:`cpu_bf16_speedup`: its model name (a virtual
    machine's may be generic, e.g. ``Intel(R) Xeon(R) Processor``), family, model and
    stepping, whether it lists AVX512-BF16 and AMX, and its logical cores."""
    info = _cpuinfo()
    shown = sorted(set(info.get("flags", "").split()) & {"avx512_bf16", "amx_bf16", "amx_tile"})
    return " ".join([cpu_name(), *(f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info),
                     f"flags {','.join(shown) or '-'}", f"{os.cpu_count()} cores"])


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (empty where there is none), read once
    per process."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = (part.strip() for part in line.partition(":"))
        fields.setdefault(name, value)
    return fields


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created) for the block, where ``fcntl`` exists and the
    folder can be written; otherwise no lock."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measure_bf16_speedup(steps: int = 5) -> float:
    """fp32 step time / bf16 autocast step time of a small convolutional network (two 3x3
    convolutions of 64 and 128 channels with BatchNorm and GELU, max-pooling and a linear
    layer: the layers of the zoo's CIFAR networks) training on a channels-last batch of 32
    16x16 inputs, forward and backward; the best of ``steps`` steps of each, taken in turns
    after one warm-up step each, with gradients on even inside ``no_grad`` or
    ``inference_mode``. Seeded inside a fork of the CPU's random stream (no GPU stream is
    touched): the caller's draws are untouched."""
    from torch import nn

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        net.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    with torch.inference_mode(False), torch.enable_grad():
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(0)
            net = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.GELU(),
                                nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.GELU(),
                                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128 * 8 * 8, 10))
            net = net.to(memory_format=torch.channels_last)
            x = torch.randn(32, 64, 16, 16).to(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (32,))
        step(False), step(True)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(steps):
            for bf16 in (False, True):
                best[bf16] = min(best[bf16], step(bf16))
    return best[False] / best[True]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {"off", "bf16", "fp16"} on ``device`` (``auto``
    resolved by :func:`resolve_amp`); a null context when off."""
    import contextlib

    amp = resolve_amp(amp, device)
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


__all__ = ["autocast", "resolve_device", "device_type", "native_bf16", "resolve_amp",
           "cpu_bf16_speedup", "measure_bf16_speedup", "cpu_name", "device_name"]
