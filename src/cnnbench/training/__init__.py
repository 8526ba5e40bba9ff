"""Training: one run from a config to a run directory (engine, optimizers, checkpoints, techniques)."""
