"""How far a model's confidence can be trusted: calibration of its softmax probabilities.

A model is calibrated when, of the images it gives a top probability ``p``, a fraction ``p``
is right. Three numbers say how far it is from that, on one split (Guo et al., "On Calibration
of Modern Neural Networks", ICML 2017):

* ``ece``: expected calibration error, with :data:`BINS` (15) equal-width bins of the top
  probability: the mean over images of ``|accuracy - confidence|`` of their bin.
* ``nll``: negative log-likelihood, the mean cross-entropy (no label smoothing): the run's
  ``test_loss``.
* ``brier``: Brier score, the mean over images of ``sum_k (p_k - [k == y])**2`` (0 is perfect;
  2 is the worst).

The reliability diagram is drawn from the bins (``reliability``: images, mean confidence and
accuracy per bin). :func:`fit_temperature` fits the one scale of the logits (temperature
scaling) that minimises the NLL of the validation split; it changes no prediction, only the
probabilities, and the test split is then measured again with it. The test set is never used
to fit it.

:class:`CalibrationSums` keeps the sums on the device while an evaluation runs (no host
synchronisation per batch) and can be all-reduced across processes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # a fitted temperature is kept inside this range


class CalibrationSums:
    """Sums over a split of what the calibration numbers need; :meth:`add` per batch."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float64,
                 temperature: float = 1.0):
        self.temperature = temperature
        self.count = torch.zeros(BINS, dtype=dtype, device=device)
        self.confidence = torch.zeros(BINS, dtype=dtype, device=device)
        self.correct = torch.zeros(BINS, dtype=dtype, device=device)
        self.nll = torch.zeros((), dtype=dtype, device=device)
        self.brier = torch.zeros((), dtype=dtype, device=device)

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``logits`` (float, before the temperature) and integer ``targets``."""
        dtype = self.count.dtype
        if self.temperature != 1.0:
            logits = logits / self.temperature
        self.nll += nn.functional.cross_entropy(logits, targets, reduction="sum").to(dtype)
        probs = logits.softmax(1)
        confidence, predicted = probs.max(1)
        true_prob = probs.gather(1, targets[:, None])[:, 0]
        # sum_k (p_k - [k == y])^2 = sum_k p_k^2 - 2 p_y + 1
        self.brier += (probs.square().sum(1) - 2 * true_prob + 1).sum().to(dtype)
        # bin b holds confidences in (b/BINS, (b+1)/BINS]; a one-hot product, not a weighted
        # bincount, so that the sums are deterministic on GPUs too
        which = (confidence * BINS).ceil().long().clamp_(1, BINS) - 1
        onehot = nn.functional.one_hot(which, BINS).to(dtype)
        self.count += onehot.sum(0)
        self.confidence += confidence.to(dtype) @ onehot
        self.correct += (predicted == targets).to(dtype) @ onehot

    def tensors(self) -> list[torch.Tensor]:
        """The sums, to all-reduce across processes (in place)."""
        return [self.count, self.confidence, self.correct, self.nll, self.brier]

    def result(self) -> dict[str, Any]:
        """``ece``, ``nll``, ``brier`` and the ``reliability`` bins (lists), read once."""
        count = self.count.cpu()
        n = float(count.sum())
        if n == 0:
            raise ValueError("no images were added")
        confidence, correct = self.confidence.cpu(), self.correct.cpu()
        ece = float((correct - confidence).abs().sum()) / n  # sum_b n_b/N |acc_b - conf_b|
        held = count > 0
        return {
            "ece": ece, "nll": float(self.nll) / n, "brier": float(self.brier) / n,
            "reliability": {
                "bins": BINS,
                "count": [int(c) for c in count],
                "confidence": [float(v) if h else None
                               for v, h in zip(confidence / count.clamp(min=1), held)],
                "accuracy": [float(v) if h else None
                             for v, h in zip(correct / count.clamp(min=1), held)],
            },
        }


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature ``T`` minimising the mean NLL of ``softmax(logits / T)`` on these
    (validation) images: a one-parameter fit (LBFGS on ``log T``, float64, deterministic),
    kept inside :data:`TEMPERATURE_RANGE`."""
    if logits.shape[0] == 0:
        raise ValueError("no images to fit a temperature on")
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    with torch.inference_mode(False), torch.enable_grad():  # logits may come from inference mode
        logits = logits.detach().to("cpu", torch.float64, copy=True)
        targets = targets.detach().to("cpu", copy=True)
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-10,
                                      tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(logits / log_t.clamp(low, high).exp(), targets)
            loss.backward()
            return loss

        optimizer.step(closure)
    return float(log_t.detach().clamp(low, high).exp())


def calibration_fields(result: dict[str, Any], split: str = "test") -> dict[str, Any]:
    """A run summary's calibration entries from an evaluation of ``split`` (:func:`evaluate`'s
    result): ``<split>_ece``, ``<split>_brier`` (the NLL is ``<split>_loss``), the fitted
    ``temperature`` and the ``_scaled`` numbers (``None`` without a validation split), and the
    ``reliability`` bins of both."""
    scaled = result.get("scaled")
    return {
        f"{split}_ece": result["ece"], f"{split}_brier": result["brier"],
        "temperature": scaled["temperature"] if scaled else None,
        f"{split}_ece_scaled": scaled["ece"] if scaled else None,
        f"{split}_nll_scaled": scaled["nll"] if scaled else None,
        f"{split}_brier_scaled": scaled["brier"] if scaled else None,
        "reliability": {split: result["reliability"],
                        f"{split}_scaled": scaled["reliability"] if scaled else None},
    }


def calibration_line(result: dict[str, Any]) -> str:
    """One console line: the calibration of an evaluation, before and after the temperature."""
    line = f"calibration: ECE {result['ece']:.4f}, NLL {result['loss']:.4f}, Brier {result['brier']:.4f}"
    scaled = result.get("scaled")
    if scaled:
        line += (f"; at temperature {scaled['temperature']:.3g} (fitted on validation): "
                 f"ECE {scaled['ece']:.4f}, NLL {scaled['nll']:.4f}, Brier {scaled['brier']:.4f}")
    return line
