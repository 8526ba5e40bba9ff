"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so loading it can
never run code. Layout (``FORMAT``, ``VERSION`` 1)::

    format, version     "cnnbench-checkpoint", 1
    kind                "last" | "best"
    config              TrainConfig.to_dict()
    epoch               epochs completed
    step                optimizer steps completed
    model               the weights to evaluate (the weight average when `ema` is on)
    meta                best_val_acc, best_epoch, epochs_since_best, train_time_s, ... (plain)
    data                the data's fingerprint (classes, test_images, test_sha256)
    input               how an image becomes the model's input (Inputs.preprocessing():
                        dataset, channels, image_size, input_size, mean, std, classes);
                        checkpoints written before it lack it (readers fall back to the config)
    training            (last.ckpt only) everything needed to continue exactly:
        model           the live training weights (only when they differ from `model`: ema on)
        optimizer, scheduler, scaler, ema     state_dicts (scaler/ema: None when unused)
        rng             python, numpy, torch, cuda generator states (see capture_rng_state)
        loader          {"seed", "epoch"}: the training loaders' state for the next epoch (their
                        shuffling and augmentation are a function of seed and epoch)
        rng_ranks       (a torchrun job only) every process's rng, by rank
"""

from __future__ import annotations

import os
import pickle
import random
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnbench.errors import UserError

FORMAT = "cnnbench-checkpoint"
VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module that owns the weights (``torch.compile`` wraps it as ``_orig_mod``,
    DistributedDataParallel as ``module``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s state dict with plain names."""
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    A reader (or a crash at any moment) sees either the old file or the complete new one.
    """
    path = Path(path)
    state = {"format": FORMAT, "version": VERSION, **state}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``.

    A missing, unreadable, corrupt or foreign file raises :class:`UserError` (one line).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a checkpoint file such as {path}/best.ckpt")
    state = load_tensor_file(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a cnnbench checkpoint (no {FORMAT!r} marker); give a "
                        f"last.ckpt or best.ckpt from a run directory")
    if state.get("version") != VERSION:
        raise UserError(f"{path} is a version {state.get('version')} checkpoint; this cnnbench "
                        f"reads version {VERSION}")
    for key in ("config", "model", "epoch"):
        if key not in state:
            raise UserError(f"checkpoint {path} is incomplete (no {key!r}); it cannot be used")
    return state


BEST, LAST = "best.ckpt", "last.ckpt"  # a run directory's checkpoints, in the order opened


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a path means, for every command that opens a trained model (``eval``,
    ``predict``, ``export``, ``serve``, ``--init``): a file as given; a run directory's
    ``best.ckpt``, else its ``last.ckpt`` (a run stopped before its end)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; give a best.ckpt or last.ckpt, or "
                        f"a run directory")
    if not path.is_dir():
        return path
    for name in (BEST, LAST):
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path} holds no checkpoint (no {BEST} or {LAST}); give the directory of a "
                    f"`cnnbench train` run that completed an epoch")


def open_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """The one way to open a trained model's checkpoint: ``(file, state, config)`` for a
    checkpoint file or a run directory (:func:`checkpoint_file`), its config as a
    :class:`cnnbench.config.TrainConfig`; every failure is a one-line :class:`UserError`."""
    from cnnbench.config import TrainConfig

    file = checkpoint_file(path)
    state = load_checkpoint(file, map_location)
    try:
        config = TrainConfig.from_dict(state["config"], f"checkpoint {file}'s config")
    except UserError as exc:
        if str(file) in str(exc):  # an unknown key: the message names the file already
            raise
        raise UserError(f"checkpoint {file} has an unusable config: {exc}") from None
    if not isinstance(state["model"], dict):
        raise UserError(f"checkpoint {file} holds no weights (its 'model' entry is not a "
                        f"state dict)")
    return file, state, config


# Files a user may give where a checkpoint is wanted, by suffix: what they are.
_NOT_CHECKPOINTS = {
    ".yaml": "a YAML file (a run's config.yaml holds its options, not its weights)",
    ".yml": "a YAML file (options, not weights)",
    ".json": "a JSON file (a run's summary.json holds its results, not its weights)",
    ".jsonl": "a JSON-lines log", ".csv": "a CSV table", ".txt": "a text file",
    ".log": "a log file", ".md": "a Markdown file", ".html": "an HTML page",
    ".onnx": "an ONNX export (for ONNX Runtime; cnnbench reads its PyTorch checkpoints)",
    ".png": "an image", ".jpg": "an image", ".jpeg": "an image",
}


def _not_a_checkpoint(path: Path) -> str | None:
    """One line saying what ``path`` is instead of a checkpoint and which file to give, for a
    kind of file that is plainly not one (by its suffix); ``None`` otherwise."""
    kind = _NOT_CHECKPOINTS.get(path.suffix.lower())
    if kind is None:
        return None
    run_dir = path.parent
    held = [name for name in (BEST, LAST) if (run_dir / name).is_file()]
    if held:
        instead = f"give the run directory {run_dir} or {run_dir / held[0]}"
    else:
        instead = "give a run directory or its best.ckpt/last.ckpt"
    return f"{path} is {kind}, not a checkpoint; {instead}"


def load_tensor_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as one-line UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    if _not_a_checkpoint(path) is not None and not zipfile.is_zipfile(path):
        raise UserError(_not_a_checkpoint(path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        if blocked is None:
            # torch's own first line is about the weights_only default; the cause comes later
            cause = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
            raise UserError(f"cannot read {path}: it is corrupt, truncated or not a PyTorch "
                            f"weights file ({cause.group(1)[:160] if cause else first_line(exc)})") from None
        # torch refused to unpickle a Python object: with pickle, loading it could run code.
        raise UserError(f"refusing to read {path}: it holds pickled Python objects besides "
                        f"tensors ({blocked.group(1)}), which could run code when loaded; "
                        f"cnnbench reads weights only (re-save it as a plain state_dict if you "
                        f"trust it)") from None
    except (zipfile.BadZipFile, struct.error, EOFError, RuntimeError, ValueError,
            AttributeError, TypeError, KeyError, IndexError) as exc:
        raise UserError(f"cannot read {path}: it is corrupt, truncated or not a PyTorch weights "
                        f"file ({first_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_model_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str,
                       name: str) -> nn.Module:
    """Load ``weights`` (from ``source``, named in the error) into ``model`` (registry name
    ``name``) strictly; weights that do not fit it -> one-line :class:`UserError`."""
    try:
        unwrap(model).load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:  # torch's first line says little
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or ["?"]
        raise UserError(f"the weights in {source} do not fit model {name} "
                        f"({lines[min(1, len(lines) - 1)][:200]})") from None
    return model


def first_line(exc: BaseException) -> str:
    """An error's first line (at most 160 characters), or its kind when it has no text: what a
    one-line message quotes of an error from deep inside torch."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


# --- random number generators ---------------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state as tensors and plain lists (weights_only-safe)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
        and torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
