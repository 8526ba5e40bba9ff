"""Several processes, one run: torchrun's environment -> a process group and DistributedDataParallel.

cnnbench starts no process itself. ``torchrun --nproc_per_node=N -m cnnbench train ...`` (one
machine) or ``torchrun --nnodes=M --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT -m cnnbench
train ...`` (several) starts the processes, each with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` in its environment. :func:`setup` joins them into one
process group (nccl on GPUs, gloo on CPUs; ``--dist-backend`` chooses), one GPU per process
(``cuda:LOCAL_RANK``). Without that environment, or with one process, it returns ``None`` and
the run is the single-process run, unchanged.

What a distributed run does (its pieces live in ``loop.py``, ``setup.py``, ``record.py`` and
``evaluation.py``):

* ``--batch-size`` is the global batch. Each of the N processes takes its contiguous block of
  every global batch (``TensorLoader(rank=, world_size=)``), DDP averages the gradients, and
  each process weighs its loss by the images it holds, so a step is the one-process step on
  the same batch, up to the order of floating-point sums. The learning rate is not rescaled.
* Evaluation: each process evaluates a contiguous block of the split; the loss sums, image
  counts and confusion matrices are all-reduced, so every image counts once (no padding, unlike
  ``DistributedSampler``) and the result is the one-process result.
* BatchNorm: with ``--sync-bn`` (GPUs only) it normalises over the global batch; otherwise each
  process keeps running statistics of its own block and :meth:`Distributed.average_` averages
  them after every epoch, so every process evaluates and saves the same model.
* Only rank 0 writes the run directory. It reads the checkpoints it needs and broadcasts them,
  so the other machines need no copy of the run directory, except to ``--resume`` (the saved
  config is read by every process).
* Failures: a process that fails says so in one line and exits non-zero, and torchrun stops
  the others. Rank 0 reports at once; any other process (or one that only lost a peer) waits
  :data:`GRACE_S` seconds first (:func:`defer_report`), so a mistake every process makes is
  reported once, by rank 0. No process waits forever: collectives time out after
  :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cnnbench.errors import UserError
from cnnbench.training.checkpoint import unwrap

TIMEOUT_S = 1800  # a process waiting longer than this for the others ends the job
GRACE_S = 3.0     # how long a process other than rank 0 waits before it reports a failure
_joined = False   # this process joined a torchrun job (then it ends with end_process)


@dataclasses.dataclass(frozen=True)
class Launch:
    """Where torchrun put this process: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_launch(environ=None) -> Launch | None:
    """This process's place in a torchrun job of two or more processes; ``None`` otherwise."""
    environ = os.environ if environ is None else environ
    try:
        launch = Launch(rank=int(environ["RANK"]), world_size=int(environ["WORLD_SIZE"]),
                        local_rank=int(environ.get("LOCAL_RANK", 0)))
    except (KeyError, ValueError):
        return None
    return launch if launch.world_size > 1 else None


class ProcessFailed(UserError):
    """An unexpected error in one process of a distributed run, said in one line."""

    exit_code = 1

    def __init__(self, message: str, *, lost_peer: bool = False):
        super().__init__(message)
        self.lost_peer = lost_peer  # this process only saw another one end


def defer_report(exc: BaseException, environ=None) -> None:
    """Before a torchrun process reports ``exc`` and exits: rank 0 reports at once, any other
    process first waits :data:`GRACE_S` seconds and names itself in the message, so that when
    every process made the same mistake rank 0's line is the one printed (torchrun stops the
    others when rank 0 exits). A process that only saw another one end waits twice as long:
    the one that failed speaks first."""
    launch = torchrun_launch(environ)
    if launch is None:
        return
    if getattr(exc, "lost_peer", False):  # the process that failed reports first
        time.sleep(2 * GRACE_S)
    elif launch.rank != 0:
        time.sleep(GRACE_S)
    if launch.rank != 0 and not isinstance(exc, ProcessFailed) and exc.args:
        exc.args = (f"process {launch.rank} of {launch.world_size}: {exc.args[0]}", *exc.args[1:])


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` only says that another process of the job ended (gloo: its connection
    closed in the middle of a collective)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer"))


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> nccl on GPUs, gloo on CPUs; a backend that cannot serve ``device`` -> UserError."""
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise UserError("--dist-backend nccl needs GPUs (--device cuda); on CPUs use gloo "
                        "(--dist-backend auto chooses it)")
    available = {"nccl": dist.is_nccl_available, "gloo": dist.is_gloo_available}[backend]()
    if not available:
        raise UserError(f"this PyTorch build has no {backend} backend; use --dist-backend "
                        f"{'gloo' if backend == 'nccl' else 'nccl'}")
    return backend


@dataclasses.dataclass
class Distributed:
    """This process's view of the process group: its rank, the device it trains on, and the
    collectives a run needs. Rank 0 (:attr:`is_main`) is the one that writes."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives ----------------------------------------------------------------------
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` (on :attr:`device`) over the processes, in place; returns it."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the processes (one collective for all)."""
        tensors = [t for t in tensors if t.numel()]
        if not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        for t, mean in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.detach().copy_(mean.view_as(t))

    def all_gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of ``tensor`` concatenated in rank order (the numbers of rows
        may differ); returned on ``tensor``'s device."""
        local = tensor.to(self.device)
        count = torch.tensor([local.shape[0]], device=self.device)
        counts = [torch.zeros_like(count) for _ in range(self.world_size)]
        dist.all_gather(counts, count)
        counts = [int(c) for c in counts]
        padded = local.new_zeros((max(counts), *local.shape[1:]))
        padded[:local.shape[0]] = local
        blocks = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded)
        return torch.cat([b[:c] for b, c in zip(blocks, counts)]).to(tensor.device)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable: paths, configs, checkpoint dicts) on every process."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, model: nn.Module) -> None:
        """Give every process rank 0's parameters and buffers."""
        for tensor in unwrap(model).state_dict().values():
            dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    @contextlib.contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Local rank 0 of each machine runs the block first (decoding a dataset into the
        cache, downloading weights), the other processes of the machine after it."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()

    # -- the model ------------------------------------------------------------------------
    def wrap(self, model: nn.Module, *, find_unused_parameters: bool = False) -> nn.Module:
        """``model`` in DistributedDataParallel: gradients averaged over the processes.
        Buffers are not broadcast at every step: BatchNorm statistics are averaged after
        every epoch instead (:func:`batchnorm_statistics`)."""
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            forward_sync_buffers=False, find_unused_parameters=find_unused_parameters)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def failure(self, exc: BaseException, traceback_file: str | None = None) -> ProcessFailed:
        """``exc`` (not a :class:`UserError`) as the one-line error of this process."""
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
        me = f"process {self.rank} of {self.world_size}"
        if lost_peer(exc):
            return ProcessFailed(f"{me} stopped: another process of the job ended ({text})",
                                 lost_peer=True)
        where = f"; traceback in {traceback_file}" if traceback_file else ""
        return ProcessFailed(f"{me} failed: {text}{where}")


def setup(device: str = "auto", backend: str = "auto") -> Distributed | None:
    """Join the torchrun job this process belongs to (``None`` when it belongs to none, or
    to a job of one process). ``device``: ``auto``, ``cpu`` or ``cuda`` (then
    ``cuda:LOCAL_RANK``); ``backend``: ``auto``, ``nccl`` or ``gloo``. Idempotent."""
    launch = torchrun_launch()
    if launch is None:
        return None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("device cuda asked for, but no CUDA GPU is available; use --device "
                            "cpu (gloo) or --device auto")
        count = torch.cuda.device_count()
        if launch.local_rank >= count:
            raise UserError(f"torchrun started more processes on this machine than it has GPUs "
                            f"({count}); use --nproc_per_node={count} or fewer")
        torch.cuda.set_device(launch.local_rank)
        where = torch.device("cuda", launch.local_rank)
    else:
        where = torch.device("cpu")
    backend = resolve_backend(backend, where)
    global _joined
    _joined = True
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend,
                                    timeout=datetime.timedelta(seconds=TIMEOUT_S))
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"process {launch.rank} could not join the torchrun job ({first}); "
                            f"start cnnbench with torchrun (README: Several processes and "
                            f"machines)") from None
    return Distributed(rank=launch.rank, world_size=launch.world_size,
                       local_rank=launch.local_rank, backend=backend, device=where)


def end_process(code: int) -> None:
    """End a process that joined a torchrun job now, skipping Python's finalization.

    gloo's worker threads free each collective's tensors after it completes; a thread still
    doing so for the last collective (the summary's broadcast) when the interpreter finalizes
    takes the GIL of a dying interpreter and aborts the whole process ("terminate called
    without an active exception", exit code -6), after a run that had finished. Seen in about
    one job in five on two busy cores, where other imports had made finalization slower by
    chance. Every file of the run is closed by then; the buffered output is flushed here."""
    if not dist.is_initialized() and not _joined:
        return
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def batchnorm_statistics(model: nn.Module) -> list[str]:
    """State-dict names of the running statistics each process keeps on its own (BatchNorm
    layers other than SyncBatchNorm): the ones averaged after every epoch."""
    names = []
    for name, module in unwrap(model).named_modules():
        if (isinstance(module, nn.modules.batchnorm._BatchNorm)
                and not isinstance(module, nn.SyncBatchNorm) and module.track_running_stats):
            prefix = f"{name}." if name else ""
            names += [f"{prefix}running_mean", f"{prefix}running_var"]
    return names


def process_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s global generator (dropout) in a run seeded ``seed``:
    distinct per process, the same in every run."""
    digest = hashlib.sha256(f"cnnbench/{seed}/process/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m cnnbench ARGS``:
    ``cnnbench ARGS`` in ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={int(nproc)}", "-m", "cnnbench", *args]
