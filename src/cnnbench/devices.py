"""Which device a run uses and what it computes natively: one place for ``auto``.

``resolve_device("auto")`` is CUDA when a GPU is visible, else the CPU; ``resolve_amp("auto",
device)`` is ``bf16`` where the device multiplies bfloat16 natively (a CUDA GPU that supports
it; a CPU with AVX512-BF16 or AMX, where oneDNN's bf16 convolutions are faster than fp32: see
benchmarks/results/model_throughput-fastnet-bf16/ against -fp32/), else ``off`` (emulated bf16
would be slower, not faster). Recipes (:mod:`cnnbench.config.recipes`) key their per-device settings by
:func:`device_type`.
"""

from __future__ import annotations

import torch

from cnnbench.errors import UserError


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
    """``--amp auto`` -> ``bf16`` where :func:`native_bf16`, else ``off``; others unchanged."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "off"


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {"off", "bf16", "fp16"} on ``device`` (``auto``
    resolved by :func:`resolve_amp`); a null context when off."""
    import contextlib

    amp = resolve_amp(amp, device)
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


__all__ = ["autocast", "resolve_device", "device_type", "native_bf16", "resolve_amp"]
