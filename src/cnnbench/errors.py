"""The one error type for mistakes a user can fix.

Anything raised as :class:`UserError` reaches the CLI, which prints its message as one line
(``cnnbench: error: <message>``) and exits with status 2, never with a traceback. The message
says what is wrong and how to fix it.
"""


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing/corrupt file, bad checkpoint)."""

    exit_code = 2


# Words other tools use for an option, a model or a command, mapped to cnnbench's own: only
# ever suggested ("did you mean"), never accepted silently.
SYNONYMS = {
    "learning_rate": "lr", "learningrate": "lr", "lr_rate": "lr", "eta": "lr",
    "wd": "weight_decay", "l2": "weight_decay", "decay": "weight_decay",
    "bs": "batch_size", "batch": "batch_size", "batchsize": "batch_size",
    "n_epochs": "epochs", "num_epochs": "epochs", "max_epochs": "epochs", "iterations": "epochs",
    "arch": "model", "network": "model", "net": "model", "architecture": "model",
    "data": "dataset", "data_root": "data_dir", "root": "data_dir",
    "optim": "optimizer", "opt": "optimizer", "sched": "scheduler", "lr_scheduler": "scheduler",
    "dropout": "drop_rate", "smoothing": "label_smoothing", "workers": "num_workers",
    "output": "out", "output_dir": "out", "out_dir": "out", "logdir": "out",
    "gpu": "device", "cuda": "device", "precision": "amp", "mixed_precision": "amp",
    "aug": "augment", "augmentation": "augment", "augmentations": "augment",
    "ckpt": "checkpoint", "weights": "checkpoint", "arch_name": "model",
}


def did_you_mean(word: str, choices, synonyms: dict[str, str] | None = None) -> str | None:
    """The one of ``choices`` a user most likely meant by ``word``: a known synonym
    (:data:`SYNONYMS`, ``learning_rate`` -> ``lr``) that is among the choices, else the closest
    spelling (``epochz`` -> ``epochs``), else ``None``. ``-``/``_`` and case do not matter;
    leading dashes are kept (``--learning-rate`` -> ``--lr``)."""
    import difflib

    choices = [str(c) for c in choices]
    dashes = word[:len(word) - len(word.lstrip("-"))]
    key = word.lstrip("-").lower().replace("-", "_")
    plain = {c.lstrip("-").lower().replace("-", "_"): c for c in choices
             if c.startswith("-") == bool(dashes)}
    synonym = (synonyms if synonyms is not None else SYNONYMS).get(key)
    if synonym is not None and synonym in plain:
        return plain[synonym]
    close = difflib.get_close_matches(key, list(plain), n=1, cutoff=0.6)
    return plain[close[0]] if close else None
