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
