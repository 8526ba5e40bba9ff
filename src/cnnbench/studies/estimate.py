"""How long a study run takes on 2 CPU cores: its images at the speed measured for its model on
this project's CPU (:mod:`cnnbench.studies.throughput`, fp32 or bf16 as the run trains), or from
the model's MACs where that model was not measured (``cnnbench study show`` prints it; a test
keeps the shipped ``cpu`` profiles near 30 min)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnbench.data import get_spec, split_sizes
from cnnbench.data.specs import imagefolder_path
from cnnbench.studies import throughput
from cnnbench.studies.spec import build_config
from cnnbench.models import create_model_for, model_cost
from cnnbench.training.tta import TTA_VIEWS

# Cost model of :func:`estimate_seconds` for a model without a measured speed, fitted to what 2 cores of the AMD EPYC here do in
# fp32 (README, Performance): convolution-heavy models sustain about 100 GFLOP/s (ResNet-18 with
# the CIFAR stem: 6 x 0.56 GMACs x 32 img/s = 107), and every image costs a fixed overhead on
# top (LeNet-5 on MNIST: 12,800 img/s although its FLOPs alone would allow twice that).
CPU_GFLOPS = 100.0
CPU_OVERHEAD_S = 5e-5  # per training image; a third of it per evaluated image


def duration_text(seconds: float) -> str:
    """An estimated duration as printed: ``~40 s`` below a minute, else ``~3 min``."""
    if seconds < 0.5:
        return "<1 s"
    if seconds < 59.5:
        return f"~{seconds:.0f} s"
    return f"~{seconds / 60:.0f} min"


@dataclass(frozen=True)
class CostEstimate:
    """What a run will process and roughly how long it takes on a 2-core CPU."""

    train_images: int
    eval_images: int   # forward passes: validation every epoch and the test, times the TTA views
    macs: int          # forward MACs of one image at the training size
    seconds: float
    basis: str = f"MACs at {CPU_GFLOPS:.0f} GFLOP/s"  # what the speed comes from

    def text(self) -> str:
        return (f"{duration_text(self.seconds)} on 2 CPU cores (estimate: "
                f"{self.train_images:,} training images, {self.eval_images:,} evaluation "
                f"passes, {self.macs / 1e6:,.1f}M MACs/image; {self.basis})")


def estimate_seconds(options: dict, *, gflops: float = CPU_GFLOPS,
                     overhead_s: float = CPU_OVERHEAD_S, where: str = "study",
                     measured: bool = True) -> CostEstimate | None:
    """A rough training + evaluation time of the run with ``options`` (resolved ``train``
    options): its training images and evaluation passes at the images/s measured for its model
    on this project's 2-core CPU in the precision it trains in (scaled by the ratio of MACs
    where its input size or options differ from the measured ones); for a model not measured,
    6 x MACs per training image (forward and backward) and 2 x MACs per evaluated image and
    view at ``gflops``, plus a fixed overhead per image. It reads no data (the official dataset
    sizes) and builds the model on the meta device. ``None`` where the dataset size is not
    known in advance (``imagefolder:``). ``measured=False``: from the MACs even where the model
    was measured."""
    config = build_config(options, where)  # ``where`` names the run in a one-line error
    if imagefolder_path(config.dataset) is not None:  # its size is known only once read
        return None
    spec = get_spec(config.dataset)
    if spec.train_size is None or spec.test_size is None:
        return None
    n_train, n_val = split_sizes(spec.train_size, config.val_split)
    limit = lambda n, cap: min(n, cap) if cap else n  # noqa: E731
    n_train, n_val = limit(n_train, config.limit_train), limit(n_val, config.limit_eval)
    n_test = limit(spec.test_size, config.limit_eval)
    size = config.resize or spec.image_size[0]
    macs = _macs(config, spec, size)
    train_images = config.epochs * n_train
    eval_images = (config.epochs * n_val + n_test) * TTA_VIEWS[config.tta]
    found = throughput.lookup(config.model, spec.channels, (size, size), config.amp) if measured else None
    if found is not None:
        key, row = found
        scale = macs / row["macs"] if row["macs"] and macs else 1.0
        seconds = scale * (train_images / row["train_images_per_s"]
                           + eval_images / row["infer_images_per_s"])
        model, shape, kind = key.split("|")
        basis = (f"{row['train_images_per_s']:,.0f} training img/s measured for {model} at {shape} "
                 f"in {kind}" + (", scaled by MACs" if abs(scale - 1) > 0.01 else ""))
        return CostEstimate(train_images, eval_images, macs, seconds, basis)
    seconds = (train_images * (6 * macs / (gflops * 1e9) + overhead_s)
               + eval_images * (2 * macs / (gflops * 1e9) + overhead_s / 3))
    return CostEstimate(train_images, eval_images, macs, seconds)


_MACS: dict[tuple, int] = {}


def _macs(config, spec, size: int) -> int:
    """Forward MACs of one image of the model ``config`` builds for ``spec`` at ``size``,
    counted on the meta device once per model, input and model options (a study's seeds and
    training variants share them)."""
    key = (config.model, spec.channels, spec.num_classes, size, config.stem,
           repr(sorted(config.model_kwargs.items())))
    if key not in _MACS:
        with torch.device("meta"):  # no weights: enough to count MACs
            model = create_model_for(config, spec, (size, size))
        _MACS[key] = model_cost(model, spec.channels, (size, size))[1] or 0
    return _MACS[key]
