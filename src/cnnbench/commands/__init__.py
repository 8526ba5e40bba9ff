"""Sub-commands of the ``cnnbench`` CLI; each module has ``register(subparsers)``."""
