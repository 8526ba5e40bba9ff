"""The options of a training run: :class:`TrainConfig` and its values, pure Python (no torch).

``options`` (the dataclass, its keys and aliases), ``values`` (types and grammars), ``checks``
(every range and combination), ``recipes`` (named sets of defaults) and ``resolve`` (defaults
< recipe < file < flags, and the names of models, datasets and augmentations). ``resolve``
imports the model and data packages to check names, so it is not imported here::

    from cnnbench.config import TrainConfig
    from cnnbench.config.resolve import resolve_config
"""

from cnnbench.config.options import (ALIASES, AMP_MODES, DEFAULTS, DEVICES, DIST_BACKENDS,
                                     FIELDS, HEAD_CHOICES, NOT_RECIPE, OPTIMIZERS, PER_SEED,
                                     RESUMABLE_CHANGES, ROLES, SCHEDULERS, STEMS, TTA_MODES,
                                     TrainConfig, dump_yaml, field_info, normalize_keys)
from cnnbench.config.values import parse_batch_schedule

__all__ = ["ALIASES", "AMP_MODES", "DEFAULTS", "DEVICES", "DIST_BACKENDS", "FIELDS",
           "HEAD_CHOICES", "NOT_RECIPE", "OPTIMIZERS", "PER_SEED", "RESUMABLE_CHANGES", "ROLES",
           "SCHEDULERS", "STEMS", "TTA_MODES", "TrainConfig",
           "dump_yaml", "field_info", "normalize_keys", "parse_batch_schedule"]
