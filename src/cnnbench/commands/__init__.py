"""Sub-commands of the ``cnnbench`` CLI; each module has ``register(subparsers)``."""


def examples(*lines: str) -> str:
    """An ``examples:`` epilog for a sub-command's ``--help``: one invocation per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)
