"""Fixtures of the inference tests: a tiny digit dataset in MNIST's files, two models trained on it.

``digit_images``: 28x28 uint8 seven-segment digits, light strokes on black like MNIST's, jittered
in position, size and stroke width, blurred and noisy: LeNet-5 learns them in a few epochs.
``digits_files`` (session) writes 300 training and 30 test images as MNIST's IDX files and
trains ``lenet5`` and ``simple_cnn`` on them (a few seconds), into ``runs/``; the environment is
set only while training. ``digits_env`` points ``$CNNBENCH_DATA``/``$CNNBENCH_CACHE`` (and
torchvision's md5 list) at those files for one test, for tests that read the dataset again.
``board`` (session) loads both runs as ``cnnbench serve`` does; ``live_server(board)`` serves
it on a free port in a thread. ``png_header`` writes a PNG that only claims a huge size.
tests/conftest.py registers this module as a plugin, so its fixtures are available by name.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from conftest import md5_of, write_idx_gz

# segments: a top, b top-right, c bottom-right, d bottom, e bottom-left, f top-left, g middle
SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc",
            7: "abc", 8: "abcdefg", 9: "abcdfg"}


def draw_digit(digit: int, size: int, rng: np.random.Generator | None = None,
               width: float | None = None) -> Image.Image:
    """A seven-segment ``digit`` drawn in white on a black ``size`` x ``size`` image (MNIST's
    polarity), about 70% of its height, centred by centre of mass as MNIST's digits are (a
    ``1`` in the middle, not at the right edge of an ``8``'s box); ``rng`` jitters size,
    stroke and position."""
    jitter = (lambda scale: float(rng.normal(0, scale))) if rng is not None else (lambda scale: 0.0)
    h = size * (0.7 + jitter(0.04))
    w = h * (0.5 + jitter(0.04))
    lines = {"a": (0, 0, w, 0), "b": (w, 0, w, h / 2), "c": (w, h / 2, w, h), "d": (0, h, w, h),
             "e": (0, h / 2, 0, h), "f": (0, 0, 0, h / 2), "g": (0, h / 2, w, h / 2)}
    used = [lines[segment] for segment in SEGMENTS[digit]]
    xs, ys = [x for line in used for x in line[::2]], [y for line in used for y in line[1::2]]
    dx = size / 2 - (min(xs) + max(xs)) / 2
    dy = size / 2 - (min(ys) + max(ys)) / 2
    image = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(image)
    stroke = max(1, round(width if width is not None else size / 10 + jitter(size / 60)))
    for x0, y0, x1, y1 in used:
        pen.line((x0 + dx, y0 + dy, x1 + dx, y1 + dy), fill=255, width=stroke)
    ink = np.asarray(image, dtype=np.float64)  # then centre of mass to the centre, as MNIST
    cy, cx = (np.arange(size) @ ink.sum(1)) / ink.sum(), (np.arange(size) @ ink.sum(0)) / ink.sum()
    image = ImageChops.offset(image, round((size - 1) / 2 - cx + jitter(size * 0.03)),
                              round((size - 1) / 2 - cy + jitter(size * 0.03)))
    return image.filter(ImageFilter.GaussianBlur(size / 40))


def digit_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 28x28 digits (every class, shuffled) and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = np.stack([np.asarray(draw_digit(int(d), 28, rng), dtype=np.int16) for d in labels])
    images = np.clip(images + rng.integers(-12, 13, images.shape) * (images > 0), 0, 255)
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels.astype(np.int64))


def png_header(path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` grey pixels but holds almost none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def _patch_md5(patch: pytest.MonkeyPatch, raw: Path) -> None:
    cls = torchvision.datasets.MNIST
    patch.setattr(cls, "resources", [(f, md5_of(raw / f)) for f, _ in cls.resources])


def _use(patch: pytest.MonkeyPatch, files) -> None:
    patch.setenv("CNNBENCH_DATA", str(files.data))
    patch.setenv("CNNBENCH_CACHE", str(files.cache))
    _patch_md5(patch, files.raw)


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory):
    """The digit dataset as MNIST's files and two runs trained on it (``runs/lenet5``,
    ``runs/simple_cnn``, 6 epochs each; ``runs/notes.txt`` is not a run)."""
    root = tmp_path_factory.mktemp("digits")
    raw = root / "data" / "MNIST" / "raw"
    train_x, train_y = digit_images(300, seed=0)
    test_x, test_y = digit_images(30, seed=1)
    write_idx_gz(raw / "train-images-idx3-ubyte.gz", train_x)
    write_idx_gz(raw / "train-labels-idx1-ubyte.gz", train_y.to(torch.uint8))
    write_idx_gz(raw / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx_gz(raw / "t10k-labels-idx1-ubyte.gz", test_y.to(torch.uint8))
    files = SimpleNamespace(root=root, data=root / "data", cache=root / "cache", raw=raw,
                            runs=root / "runs", test_x=test_x, test_y=test_y)
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run

    with pytest.MonkeyPatch.context() as patch:
        _use(patch, files)
        for model in ("lenet5", "simple_cnn"):
            config = resolve_config({"model": model, "dataset": "mnist", "epochs": 6,
                                     "batch_size": 32, "lr": 3e-3, "val_split": 0.1,
                                     "device": "cpu", "num_threads": 1, "recipe": "none"})
            train_run(config, out_dir=files.runs / model, progress=False, argv=["test"])
    (files.runs / "notes.txt").write_text("not a run")
    files.lenet = files.runs / "lenet5"
    files.simple = files.runs / "simple_cnn"
    return files


@pytest.fixture
def digits_env(digits_files, monkeypatch):
    """``digits_files`` as the default data (and cache) for this test."""
    _use(monkeypatch, digits_files)
    return digits_files


@contextlib.contextmanager
def live_server(board, **options):
    """``cnnbench serve``'s server for ``board`` on a free port of 127.0.0.1, in a thread;
    yields its URL."""
    from cnnbench.inference.server import make_server

    server, sock, url = make_server(board, port=0, **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def board(digits_files):
    """The two trained digit models, as ``cnnbench serve --runs`` loads them."""
    from cnnbench.inference.server import ModelBoard

    return ModelBoard(digits_files.runs, log=lambda line: None)
