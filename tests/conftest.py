"""Shared test fixtures: tiny datasets written by the tests themselves, and no network.

* ``idx_data``: MNIST and Fashion-MNIST as tiny IDX ``.gz`` files in torchvision's layout,
  with torchvision's md5 lists patched to the fixtures' md5s.
* ``cifar_data``: tiny CIFAR-10 python batches (``cifar-10-batches-py``), md5 lists patched.
* ``image_folder``: ``PATH/{train,test}/<class>/`` with PNG and JPEG, gray and RGB images and
  one image of an odd size.
* ``tiny_mnist_env``: ``idx_data`` plus ``$CNNBENCH_DATA``/``$CNNBENCH_CACHE`` pointing at it,
  so ``load_dataset("mnist")`` (and a ``train`` run in this process) uses the tiny files.

The images are class prototypes plus noise, so a small model can learn them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnbench.data.specs import CIFAR10_CLASSES

# torch, torchvision, numpy and PIL are imported where they are used: pytest-xdist's controller
# process loads this file before it starts the workers, and only schedules tests (importing torch
# there took ~4 s before any test ran)

# OpenMP threads that wait sleep instead of spinning, in the workers and every process the tests
# start (read when torch loads OpenMP, after this file). Two workers keep both cores busy, so a
# test that trains with two threads (the thread choice, the DDP scaling benchmark) spun on the
# core the other worker needed: 7.6 s of CPU for the busy-machine test, 0.4 s sleeping. A test
# environment only: nothing here is timed, and a user's runs keep OpenMP's default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config):
    """The fixtures of the inference tests (a digit dataset, two runs trained on it, the page's
    server), for every test module that asks for them by name: where tests run (a worker, or
    pytest without workers), not in xdist's controller."""
    controller = (not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"
                  and bool(getattr(config.option, "tx", None)))  # xdist's own test: workers to start
    if not controller:
        config.pluginmanager.import_plugin("inference_fixtures")


def pytest_collection_finish(session):
    """Where tests run: what collection imported (torch, the test modules) is kept out of the
    garbage collector's full passes, which otherwise walk it again and again (about 1.6 s of CPU
    less in a run of the report, model and run tests)."""
    import gc

    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session):
    """Collectable again: a process that runs several sessions (the mutation runs) frees each
    one's garbage."""
    import gc

    gc.unfreeze()


@pytest.fixture(autouse=True, scope="session")
def _no_network(tmp_path_factory):
    """Tests never download: every network probe answers 'offline' at once. Nor do they write
    the user's cache (``~/.cache/cnnbench``: e.g. the bf16 verdict of ``--amp auto``): the
    default cache root is a folder of the session's (a test's own ``$CNNBENCH_CACHE`` wins)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CNNBENCH_OFFLINE", "1")
    patch.setenv("CNNBENCH_CACHE", str(tmp_path_factory.mktemp("default-cache")))
    yield
    patch.undo()


def tiny_images(n: int, channels: int, size: tuple[int, int], num_classes: int = 10,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images (class prototype + noise) and int64 labels covering every class."""
    import torch

    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, 256, (num_classes, channels, *size), generator=g)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    noise = torch.randint(-30, 31, (n, channels, *size), generator=g)
    return (prototypes[labels] + noise).clamp(0, 255).to(torch.uint8), labels.to(torch.int64)


def write_idx_gz(path: Path, array: torch.Tensor, header: bytes | None = None) -> None:
    """Write a uint8 tensor as a gzipped IDX file (big-endian dims after the magic)."""
    if header is None:
        header = bytes([0, 0, 8, array.dim()]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.contiguous().numpy().tobytes())


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def idx_data(tmp_path, monkeypatch):
    """Tiny MNIST/Fashion-MNIST (48 train, 12 test, 28x28) under ``root``; md5 lists patched.

    ``refresh_md5()`` re-patches the md5 lists after a test rewrites a file on purpose.
    """
    import torch
    import torchvision

    root, cache = tmp_path / "data", tmp_path / "cache"
    arrays = {}
    for offset, (name, folder) in enumerate((("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"))):
        train_x, train_y = tiny_images(48, 1, (28, 28), seed=offset)
        test_x, test_y = tiny_images(12, 1, (28, 28), seed=10 + offset)
        raw = root / folder / "raw"
        write_idx_gz(raw / "train-images-idx3-ubyte.gz", train_x[:, 0])
        write_idx_gz(raw / "train-labels-idx1-ubyte.gz", train_y.to(torch.uint8))
        write_idx_gz(raw / "t10k-images-idx3-ubyte.gz", test_x[:, 0])
        write_idx_gz(raw / "t10k-labels-idx1-ubyte.gz", test_y.to(torch.uint8))
        arrays[name] = SimpleNamespace(train_x=train_x, train_y=train_y, test_x=test_x,
                                       test_y=test_y, raw=raw)

    def refresh_md5():
        for name, cls in (("mnist", torchvision.datasets.MNIST),
                          ("fashion_mnist", torchvision.datasets.FashionMNIST)):
            raw = arrays[name].raw
            monkeypatch.setattr(cls, "resources",
                                [(f, md5_of(raw / f)) for f, _ in cls.resources])

    refresh_md5()
    return SimpleNamespace(root=root, cache=cache, refresh_md5=refresh_md5, **arrays)


@pytest.fixture
def tiny_mnist_env(idx_data, monkeypatch):
    """``idx_data`` made the default data and cache roots (``$CNNBENCH_DATA``/``$CNNBENCH_CACHE``)."""
    monkeypatch.setenv("CNNBENCH_DATA", str(idx_data.root))
    monkeypatch.setenv("CNNBENCH_CACHE", str(idx_data.cache))
    return idx_data


def write_cifar10_jpeg(data_root: Path, per_class: int = 2, classes=None) -> Path:
    """A tiny ``cifar10_jpeg`` mirror under ``data_root/CIFAR10-JPEG`` (``per_class`` random
    32x32 JPEGs per class in train/, one in test/); returns its folder."""
    import numpy as np
    from PIL import Image

    from cnnbench.data import get_spec

    root = data_root / "CIFAR10-JPEG"
    rng = np.random.default_rng(1)
    for split, n in (("train", per_class), ("test", 1)):
        for cls in classes or get_spec("cifar10_jpeg").classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i:04d}.jpg")
    return root


def write_cifar_batches(root, monkeypatch, n_train: int, n_test: int, seed: int):
    """Tiny CIFAR-10 batches (``n_train`` training images over the 5 batch files, ``n_test``
    test images, 32x32x3) in torchvision's layout under ``root/cifar-10-batches-py``, with
    torchvision's md5 lists patched to match. Returns ``(folder, train_x, train_y, test_x,
    test_y)``."""
    import torchvision

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = tiny_images(n_train, 3, (32, 32), seed=seed)
    test_x, test_y = tiny_images(n_test, 3, (32, 32), seed=seed + 1)

    def write(name, x, y):
        # The CIFAR format: rows of 3072 bytes, channel-major (R plane, G plane, B plane).
        batch = {"data": x.reshape(len(x), -1).numpy(), "labels": y.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))

    per = n_train // 5
    for i in range(5):
        write(f"data_batch_{i + 1}", train_x[per * i:per * (i + 1)], train_y[per * i:per * (i + 1)])
    write("test_batch", test_x, test_y)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f, md5_of(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5_of(folder / f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5_of(folder / "batches.meta")})
    return folder, train_x, train_y, test_x, test_y


@pytest.fixture
def cifar_data(tmp_path, monkeypatch):
    """Tiny CIFAR-10 batches (5 x 4 train, 6 test images, 32x32x3) in torchvision's layout."""
    root, cache = tmp_path / "data", tmp_path / "cache"
    folder, train_x, train_y, test_x, test_y = write_cifar_batches(root, monkeypatch, 20, 6, seed=3)
    return SimpleNamespace(root=root, cache=cache, folder=folder, train_x=train_x,
                           train_y=train_y, test_x=test_x, test_y=test_y)


@pytest.fixture
def image_folder(tmp_path):
    """``path/{train,test}/{cat,dog}/`` with PNG and JPEG, gray and RGB 8x8 images, and one
    12x10 RGB PNG (``train/dog/odd.png``) that must be resized.

    ``pixels`` maps each relative path to the uint8 C x H x W array PIL decodes from the file.
    """
    import numpy as np
    import torch
    from PIL import Image

    path = tmp_path / "folder"
    rng = np.random.default_rng(0)
    layout = {  # (split, class): [(file name, mode, size)]
        ("train", "cat"): [("a.png", "RGB", 8), ("b.png", "RGB", 8), ("c.jpg", "L", 8),
                           ("d.jpg", "RGB", 8)],
        ("train", "dog"): [("a.jpg", "RGB", 8), ("b.png", "L", 8), ("c.jpeg", "RGB", 8),
                           ("odd.png", "RGB", (12, 10))],
        ("test", "cat"): [("a.png", "L", 8), ("b.jpg", "RGB", 8)],
        ("test", "dog"): [("a.png", "RGB", 8), ("b.jpg", "L", 8)],
    }
    pixels = {}
    for (split, cls), files in layout.items():
        folder = path / split / cls
        folder.mkdir(parents=True)
        for name, mode, size in files:
            h, w = (size, size) if isinstance(size, int) else size
            shape = (h, w) if mode == "L" else (h, w, 3)
            # 2-D arrays become mode "L" (gray), H x W x 3 arrays "RGB".
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name, quality=95)
            decoded = np.array(Image.open(folder / name).convert("RGB"))
            pixels[f"{split}/{cls}/{name}"] = torch.from_numpy(decoded).permute(2, 0, 1)
    (path / "train" / "cat" / "notes.txt").write_text("not an image")
    return SimpleNamespace(path=path, cache=tmp_path / "cache", pixels=pixels,
                           classes=["cat", "dog"])


def slow_first(item) -> tuple[bool, float]:
    """Sort key: tests marked ``slow`` (subprocesses, torchrun jobs, whole studies, a Ray
    cluster) first, the longest of them first (``@pytest.mark.slow(seconds=N)``: about what it
    takes here), then the rest in their order."""
    marker = item.get_closest_marker("slow")
    return (marker is None, -marker.kwargs.get("seconds", 10) if marker else 0)


def pytest_collection_modifyitems(config, items):
    """Slow tests run first, the longest first. With ``./test.sh``'s two workers (``--dist
    worksteal``: each starts on one half of this list, and a worker out of tests takes from the
    end of the other's) the long jobs are over early and the last tests are short ones, so
    neither worker waits long for the other at the end; alone the order changes nothing."""
    items.sort(key=slow_first)
