"""Sub-commands of the ``cnnbench`` CLI; each module has ``register(subparsers)``."""

import contextlib
import shutil

MAX_WIDTH = 100  # help and `recipes NAME` text wraps to the terminal, but never wider than this


def text_width() -> int:
    """Columns to wrap help and descriptions to: the terminal's (``$COLUMNS`` first), at most
    :data:`MAX_WIDTH`."""
    return max(20, min(shutil.get_terminal_size().columns - 2, MAX_WIDTH))


def examples(*lines: str) -> str:
    """An ``examples:`` epilog for a sub-command's ``--help``: one invocation per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def number_text(value) -> str:
    """A number as a reader writes it: ``44426`` for ``44426.0``, ``99.27`` for ``99.27``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_executor_flags(parser, what: str, out_note: str = "") -> None:
    """``--executor local|ray`` and the Ray options of a command that trains many runs
    (``study run``: runs; ``search``: trials)."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help=f"train the {what}s one after another here (local, the default), or "
                             f"as Ray tasks, as many at once as the cluster holds (pip install "
                             f"'cnnbench[cluster]')")
    parser.add_argument("--address", metavar="auto|HOST:PORT",
                        help=f"with --executor ray: join this Ray cluster (default: start one on "
                             f"this machine){out_note}")
    parser.add_argument("--cpus-per-run", type=float, default=1, metavar="C",
                        help=f"with --executor ray: CPUs each {what} asks for, and its threads "
                             f"(default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0, metavar="G",
                        help=f"with --executor ray: GPUs each {what} asks for (default 0)")


def check_executor_flags(args) -> None:
    """One line when Ray's options are given without ``--executor ray``."""
    if args.executor != "local":
        return
    ray_only = [f for f, on in (("--address", args.address is not None),
                                ("--cpus-per-run", args.cpus_per_run != 1),
                                ("--gpus-per-run", args.gpus_per_run != 0)) if on]
    if ray_only:
        from cnnbench.errors import UserError

        raise UserError(f"{', '.join(ray_only)} apply to --executor ray; add it or leave "
                        f"them out")


@contextlib.contextmanager
def stop_on_sigterm():
    """Within this block SIGTERM (``kill``, a batch scheduler's stop) ends a run as Ctrl-C does:
    recorded in the run directory, with the command that continues it. Under torchrun, which
    stops its processes itself, and outside the main thread it changes nothing."""
    import signal
    import threading

    from cnnbench.training.distributed import torchrun_launch

    if threading.current_thread() is not threading.main_thread() or torchrun_launch() is not None:
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
