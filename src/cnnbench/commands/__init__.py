"""Sub-commands of the ``cnnbench`` CLI; each module has ``register(subparsers)``."""

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
