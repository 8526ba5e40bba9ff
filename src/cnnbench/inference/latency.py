"""What a network costs to run: inference latency at batch 1 and throughput at batch 256, in
PyTorch (eager, ``inference_mode``) and in ONNX Runtime (through the export's ONNX writer),
on the machine that runs it.

Each measurement warms up (two calls), then repeats the call until ``min_time_s`` (default
:data:`MIN_TIME_S`) has passed
(at least three times) and takes the median: ``batch1_ms`` is the median time of one image,
``batch256_images_per_s`` the images per second of batches of 256. The numbers are this
machine's, at its current load and thread count (both recorded): compare them only with
numbers measured on the same machine in the same call.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

BATCHES = (1, 256)
MIN_TIME_S = 0.5  # each measurement repeats for at least this long


def _timed(call: Callable[[], Any], min_time_s: float) -> float:
    """The median seconds of ``call()`` after two warm-up calls, repeated for ``min_time_s``
    (at least three times)."""
    call()
    call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < min_time_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rates(run: Callable[[torch.Tensor], Any], shape: tuple[int, int, int], device: torch.device,
           min_time_s: float, sync: Callable[[], None]) -> dict[str, float]:
    out = {}
    for batch in BATCHES:
        x = torch.randn(batch, *shape, device=device)
        seconds = _timed(lambda: (run(x), sync()), min_time_s)
        if batch == 1:
            out["batch1_ms"] = 1000 * seconds
        else:
            out[f"batch{batch}_images_per_s"] = batch / seconds
    return out


def measure(model: nn.Module, shape: tuple[int, int, int], *, device: str | torch.device = "cpu",
            onnx: bool = True, min_time_s: float | None = None) -> dict[str, Any]:
    """Latency and throughput of ``model`` (put in eval mode) for inputs of ``shape``
    (C, H, W): ``eager`` and, with ``onnx`` (and the export extra installed),
    ``onnxruntime`` (CPU execution provider), or ``onnxruntime_error`` saying why not."""
    from cnnbench.devices import device_name

    device = torch.device(device)
    min_time_s = MIN_TIME_S if min_time_s is None else min_time_s
    model = model.eval().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def eager(x):
        with torch.inference_mode():
            return model(x)

    result: dict[str, Any] = {"input": list(shape), "device": str(device),
                              "device_name": device_name(device),
                              "threads": torch.get_num_threads(),
                              "eager": _rates(eager, shape, device, min_time_s, sync)}
    if onnx:
        try:
            result["onnxruntime"] = _onnx_rates(model.cpu(), shape, min_time_s)
        except Exception as exc:  # noqa: BLE001 - ONNX is an extra: say why, keep the rest
            lines = str(exc).strip().splitlines()
            result["onnxruntime_error"] = lines[0][:200] if lines else type(exc).__name__
        finally:
            model.to(device)
    return result


def _onnx_rates(model: nn.Module, shape: tuple[int, int, int], min_time_s: float) -> dict[str, float]:
    from cnnbench.inference.export import write_onnx

    with tempfile.TemporaryDirectory() as tmp:
        run = write_onnx(model, torch.randn(2, *shape), Path(tmp) / "model.onnx", metadata="")
        return _rates(run, shape, torch.device("cpu"), min_time_s, lambda: None)


def measure_checkpoint(path: str | Path, *, device: str = "cpu", onnx: bool = True,
                       min_time_s: float | None = None, write: bool = True) -> dict[str, Any]:
    """:func:`measure` for the model of a checkpoint or run directory, at its input size;
    written to the run directory's ``latency.json`` (``write``) when it is in one."""
    from cnnbench.inference.model import load_trained_model
    from cnnbench.training.rundir import LATENCY_FILE, write_json

    trained = load_trained_model(path, device=device)
    p = trained.preprocessing
    result = {"model": trained.config.model, "dataset": trained.config.dataset,
              "checkpoint": str(trained.path),
              **measure(trained.model, (p.channels, *p.input_size), device=device, onnx=onnx,
                        min_time_s=min_time_s)}
    if write and trained.run_dir is not None:
        write_json(trained.run_dir / LATENCY_FILE, result)
        result["written_to"] = str(trained.run_dir / LATENCY_FILE)
    return result
