"""Dataset specs: what a model and a report need to know about each dataset.

The dataset registry (:func:`register_dataset`: a spec, its Source and aliases, as models
register with :func:`cnnbench.models.register_model`) and the built-in datasets: pure data, no
files are touched, and no other module of :mod:`cnnbench.data` is imported (the built-ins name
their Source builders in :mod:`cnnbench.data.sources`, which builds them). The spec of an
``imagefolder:PATH`` dataset comes from the folder itself, so it is built where files are read:
:func:`cnnbench.data.datasets.get_spec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cnnbench.errors import UserError, did_you_mean

IMAGEFOLDER_PREFIX = "imagefolder:"

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
# The label names published with Fashion-MNIST (its README), in label order.
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# The fine label names of CIFAR-100's `meta` file, in label order (torchvision only reads them
# from the downloaded file, and a spec must exist before any file does).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


@dataclass(frozen=True)
class DatasetSpec:
    """What is fixed about a dataset: shape, classes and normalisation statistics.

    ``image_size`` is ``(H, W)``; ``mean``/``std`` are per channel, on pixels scaled to [0, 1]
    (what ``torchvision.transforms.Normalize`` expects after ``ToTensor``). ``source`` says
    where the pixels come from, in words. ``train_size``/``test_size`` are the sizes of the
    official files (``None`` where not known in advance, as for ``imagefolder:PATH``).
    """

    name: str
    channels: int
    image_size: tuple[int, int]
    num_classes: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    train_size: int | None = None
    test_size: int | None = None

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"], channels=int(d["channels"]), image_size=tuple(d["image_size"]),
            num_classes=int(d["num_classes"]), classes=tuple(d["classes"]),
            mean=tuple(d["mean"]), std=tuple(d["std"]), source=d["source"],
            train_size=d.get("train_size"), test_size=d.get("test_size"),
        )


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its spec, how to build its :class:`~cnnbench.data.source_base.Source`
    (called only when files are read, so listing datasets imports no torch) and the other
    spellings its name accepts."""

    spec: DatasetSpec
    source: Callable[[], Any] | tuple[str, dict]
    aliases: tuple[str, ...] = ()
    stands_in_for: tuple[str, str] | None = None  # (dataset, why its numbers are not that one's)


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(spec: DatasetSpec, *, source: Callable[[], Any] | tuple[str, dict],
                     aliases: tuple[str, ...] = (),
                     stands_in_for: tuple[str, str] | None = None) -> DatasetSpec:
    """Add a dataset: a new one is one :class:`~cnnbench.data.source_base.Source` subclass and
    one call of this (as a new model is one builder and one ``register_model``). ``source``
    builds its Source: a callable, or ``(name, keywords)`` of a builder in
    :mod:`cnnbench.data.sources` called as ``builder(dataset_name, **keywords)`` (how the
    built-ins name theirs, so that this module imports no other); ``aliases`` are other spellings (case-insensitive). The CLI's help,
    completion, ``cnnbench datasets`` and name checks all read this registry. A name or alias
    taken twice raises ``ValueError``. ``stands_in_for``: ``(dataset, why)`` for a copy of
    another dataset that is not the same (a lossy mirror): recipes and studies treat it as that
    dataset, and the report names it as a departure, with ``why``."""
    keys = [spec.name, *(a.strip().lower() for a in aliases)]
    taken = [k for k in keys if k in _REGISTRY or k in _ALIASES]
    if taken:
        raise ValueError(f"dataset name {taken[0]!r} is already registered")
    _REGISTRY[spec.name] = DatasetEntry(spec, source, tuple(aliases), stands_in_for)
    _ALIASES.update({k: spec.name for k in keys[1:]})
    return spec


_ALIASES: dict[str, str] = {}


def list_datasets() -> list[str]:
    """Names of the registered datasets (``imagefolder:PATH`` is accepted besides these)."""
    return list(_REGISTRY)


def variants(name: str) -> tuple[str, ...]:
    """``name`` and every registered dataset that stands in for it (``cifar10``:
    ``("cifar10", "cifar10_jpeg")``): what a recipe's or a study's settings for it cover."""
    return (name, *(n for n, e in _REGISTRY.items()
                    if e.stands_in_for is not None and e.stands_in_for[0] == name))


def stands_in_for(name: str) -> tuple[str, str] | None:
    """``(dataset, why)`` when ``name`` is registered as a stand-in for another dataset."""
    entry = _REGISTRY.get(name)
    return entry.stands_in_for if entry is not None else None


def registered_spec(name: str) -> DatasetSpec | None:
    """The spec of a registered dataset's canonical name; ``None`` for any other name."""
    entry = _REGISTRY.get(name)
    return entry.spec if entry is not None else None


def registered_entry(name: str) -> DatasetEntry | None:
    """The registry's entry for a canonical dataset name; ``None`` for any other name."""
    return _REGISTRY.get(name)


# --- the built-in datasets ------------------------------------------------------------------
_CIFAR10_STATS = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))

register_dataset(
    DatasetSpec("mnist", 1, (28, 28), 10, MNIST_CLASSES, (0.1307,), (0.3081,),
                "official MNIST IDX files (<data>/MNIST/raw/*.gz, torchvision md5s)", 60000, 10000),
    source=("IdxSource", {"tv_name": "MNIST",
                          "probe_url": "https://ossci-datasets.s3.amazonaws.com/mnist/"}))
register_dataset(
    DatasetSpec("fashion_mnist", 1, (28, 28), 10, FASHION_MNIST_CLASSES, (0.2860,), (0.3530,),
                "official Fashion-MNIST IDX files (<data>/FashionMNIST/raw/*.gz, torchvision md5s)",
                60000, 10000),
    source=("IdxSource", {"tv_name": "FashionMNIST", "probe_url":
                          "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"}),
    aliases=("fashionmnist", "fashion-mnist", "fmnist"))
register_dataset(
    DatasetSpec("cifar10", 3, (32, 32), 10, CIFAR10_CLASSES, **_CIFAR10_STATS,
                source="official CIFAR-10 python batches (<data>/cifar-10-batches-py, torchvision md5s)",
                train_size=50000, test_size=10000),
    source=("CifarSource", {
        "tv_name": "CIFAR10", "folder": "cifar-10-batches-py",
        "files": (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        "archive": "cifar-10-python.tar.gz",
        "probe_url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}),
    aliases=("cifar-10", "cifar_10"))
register_dataset(
    DatasetSpec("cifar100", 3, (32, 32), 100, CIFAR100_CLASSES,
                (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                "official CIFAR-100 python batches (<data>/cifar-100-python, torchvision md5s)",
                50000, 10000),
    source=("CifarSource", {
        "tv_name": "CIFAR100", "folder": "cifar-100-python", "files": ("train", "test", "meta"),
        "archive": "cifar-100-python.tar.gz",
        "probe_url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"}),
    aliases=("cifar-100", "cifar_100"))
register_dataset(
    # Same classes and statistics as CIFAR-10, but its own name: JPEG artefacts change the
    # pixels, so results on it must never be reported as CIFAR-10 results.
    DatasetSpec("cifar10_jpeg", 3, (32, 32), 10, CIFAR10_CLASSES, **_CIFAR10_STATS,
                source="lossy JPEG mirror of CIFAR-10 (<data>/CIFAR10-JPEG/{train,test}/<class>/*.jpg)",
                train_size=50000, test_size=10000),
    source=("cifar10_jpeg_source", {}),
    aliases=("cifar10-jpeg",),
    stands_in_for=("cifar10", "a lossy JPEG mirror of CIFAR-10 (quality about 75), not the "
                              "official files: its accuracies are lower and not comparable digit "
                              "for digit with CIFAR-10's"))


def resolve_dataset_name(name: str) -> str:
    """Canonical dataset name: case-insensitive, common spellings accepted.

    ``imagefolder:PATH`` is returned with PATH unchanged (it is not checked here).
    Unknown name -> :class:`UserError` listing the valid ones.
    """
    if name.lower().startswith(IMAGEFOLDER_PREFIX):
        path = name[len(IMAGEFOLDER_PREFIX):]
        if not path:
            raise UserError("imagefolder needs a path: use --dataset imagefolder:PATH "
                            "with PATH/train/<class>/*.png|jpg and PATH/test/<class>/...")
        return IMAGEFOLDER_PREFIX + path
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        close = did_you_mean(key, [*_REGISTRY, *_ALIASES])
        hint = f" (did you mean {_ALIASES.get(close, close)!r}?)" if close else ""
        raise UserError(f"unknown dataset {name!r}{hint}; valid: {', '.join(_REGISTRY)}, "
                        f"imagefolder:PATH")
    return key


def imagefolder_path(name: str) -> Path | None:
    """PATH of an ``imagefolder:PATH`` name (``~`` expanded), else ``None``."""
    if not name.lower().startswith(IMAGEFOLDER_PREFIX):
        return None
    return Path(name[len(IMAGEFOLDER_PREFIX):]).expanduser()

