"""How sure the report's numbers are: intervals of accuracies and tests between runs.

Every distribution comes from SciPy; only the Holm step-down correction (a sort and a
running maximum) is written here.

* :func:`wilson_interval`: the Wilson score interval of one accuracy measured on ``n`` images
  (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``): the uncertainty of one run's
  test accuracy that comes from the finite test set.
* :func:`seed_stats`: mean, sample standard deviation and the Student-t interval of the mean
  (``scipy.stats.t``) over the seeds of one run (2 or more): the uncertainty from training.
* :func:`mcnemar_exact`: McNemar's exact test of two classifiers on the same images
  (``scipy.stats.binomtest`` on the discordant pairs).
* :func:`holm`: Holm's step-down adjustment of several p-values (familywise error).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats as _stats

CONFIDENCE = 0.95


def wilson_interval(correct: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval (fractions) of ``correct`` right answers out of ``n``."""
    correct, n = int(correct), int(n)
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got correct={correct}, n={n}")
    ci = _stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class SeedStats:
    """A number over the seeds of one run: mean, sample std and the t-interval of the mean."""

    n: int
    mean: float
    std: float
    low: float
    high: float


def seed_stats(values: Sequence[float | None], confidence: float = CONFIDENCE
               ) -> SeedStats | None:
    """Mean, sample standard deviation and the ``confidence`` Student-t interval of the mean
    (``n - 1`` degrees of freedom) of the values that are set; ``None`` for fewer than 2."""
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    n = len(vals)
    mean, std = statistics.fmean(vals), statistics.stdev(vals)
    half = float(_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return SeedStats(n, mean, std, mean - half, mean + half)


class McNemar(NamedTuple):
    """McNemar's exact test of runs A and B on the same images: ``b`` images A gets right and
    B wrong, ``c`` the reverse, ``p`` the two-sided p-value (1 when no image is discordant)."""

    b: int
    c: int
    p: float


def mcnemar_exact(pred_a: Sequence[int], pred_b: Sequence[int], targets: Sequence[int]
                  ) -> McNemar:
    """McNemar's exact test: under "A and B are equally accurate" each discordant image is
    A's with probability 1/2, so ``b ~ Binomial(b + c, 1/2)``."""
    a, b_, t = (np.asarray(x) for x in (pred_a, pred_b, targets))
    if not (a.shape == b_.shape == t.shape) or a.ndim != 1:
        raise ValueError(f"predictions and targets differ in length: {a.shape}, {b_.shape}, "
                         f"{t.shape}")
    right_a, right_b = a == t, b_ == t
    b = int(np.count_nonzero(right_a & ~right_b))
    c = int(np.count_nonzero(~right_a & right_b))
    p = 1.0 if b + c == 0 else float(_stats.binomtest(b, b + c, 0.5).pvalue)
    return McNemar(b, c, min(p, 1.0))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest (k from 0) is
    multiplied by ``m - k``, capped at 1, and made monotone (never below an earlier one)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted
