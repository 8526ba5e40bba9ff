"""Fixtures of the training-engine tests: a tiny learnable image folder, tiny models, run helpers.

``tiny_folder``: ``PATH/{train,test}/<class>/*.png``, 4 classes of 12x12 gray images (a bright
bar whose position gives the class, plus noise), 160 train / 48 test images: LeNet-5 learns it
in an epoch or two. Used as ``--dataset imagefolder:PATH`` with its own data and cache roots, so
in-process runs and subprocesses see the same files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

CLASSES = ("bottom", "left", "right", "top")


def bar_images(n: int, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 ``size x size`` images: noise plus a bright bar on the class's side."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    images = rng.integers(0, 160, (n, size, size)).astype(np.int16)
    w = max(2, size // 4)
    for img, label in zip(images, labels):
        offset = int(rng.integers(0, 2))
        sl = slice(offset, offset + w)
        if CLASSES[label] == "bottom":
            img[size - w - offset:size - offset, :] += 70
        elif CLASSES[label] == "left":
            img[:, sl] += 70
        elif CLASSES[label] == "right":
            img[:, size - w - offset:size - offset] += 70
        else:
            img[sl, :] += 70
    return images.clip(0, 255).astype(np.uint8), labels


def write_folder(path: Path, n_train: int = 160, n_test: int = 48, size: int = 12) -> Path:
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = bar_images(n, size, seed)
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = path / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i:04d}.png")
    return path


@pytest.fixture(scope="session")
def _tiny_folder_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-data")
    write_folder(root / "bars")
    write_folder(root / "bars_long", n_train=400, n_test=32)
    return root


@pytest.fixture
def tiny_folder(_tiny_folder_files, tmp_path, monkeypatch):
    """The tiny image folders, with ``$CNNBENCH_DATA``/``$CNNBENCH_CACHE`` set for this test.

    ``dataset`` is the ``imagefolder:`` name of the 160-image folder, ``long_dataset`` that of
    a 400-image one (more steps per epoch, for kill-and-resume)."""
    cache = _tiny_folder_files / "cache"
    monkeypatch.setenv("CNNBENCH_DATA", str(_tiny_folder_files))
    monkeypatch.setenv("CNNBENCH_CACHE", str(cache))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    return SimpleNamespace(root=_tiny_folder_files, cache=cache,
                           dataset=f"imagefolder:{_tiny_folder_files / 'bars'}",
                           long_dataset=f"imagefolder:{_tiny_folder_files / 'bars_long'}",
                           out=tmp_path / "runs")


def quick_options(tiny, **overrides) -> dict:
    """Options of a fast, deterministic CPU run on the tiny folder."""
    options = dict(dataset=tiny.dataset, epochs=2, batch_size=16, lr=3e-3, val_split=0.25,
                   device="cpu", deterministic=True, log_every=5, num_threads=1, recipe="none")
    options.update(overrides)
    return {k: v for k, v in options.items() if v is not None}  # None: leave the option out


def train_tiny(tiny, name: str = "run", progress: bool = False, **overrides):
    """``(summary, run directory)`` of :func:`quick_options` (with ``overrides``) trained into
    ``tiny.out / name``."""
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run

    out = tiny.out / name
    config = resolve_config(quick_options(tiny, **overrides))
    return train_run(config, out_dir=out, progress=progress, argv=["cnnbench", "test"]), out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run directory's TensorBoard files, read back as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def cli_env(tiny) -> dict:
    """Environment of a ``cnnbench`` subprocess on the tiny folders (one thread, offline)."""
    env = dict(os.environ)
    env.update(CNNBENCH_DATA=str(tiny.root), CNNBENCH_CACHE=str(tiny.cache), CNNBENCH_OFFLINE="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnbench", *args]


class TinyNet(nn.Module):
    """conv-BN-ReLU-pool-linear: small enough to train in milliseconds, with BN and biases."""

    def __init__(self, in_chans: int = 1, num_classes: int = 4, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


class AuxNet(TinyNet):
    """TinyNet with an auxiliary head that (like GoogLeNet) returns a tuple in training mode."""

    aux_weight = 0.5

    def __init__(self, **kw):
        super().__init__(**kw)
        self.aux = nn.Linear(4 * self.conv.out_channels, self.fc.out_features)

    def forward(self, x):
        features = torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1)
        if self.training:
            return self.fc(features), self.aux(features)
        return self.fc(features)


def tensor_batches(n: int = 64, num_classes: int = 4, batch_size: int = 16, seed: int = 0,
                   size: int = 8):
    """A list of ``(x, y)`` float batches of a separable toy problem (class = bright quadrant)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = torch.randn(n, 1, size, size, generator=g) * 0.3
    half = size // 2
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * half:(r + 1) * half, c * half:(c + 1) * half] += 2.0
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]
