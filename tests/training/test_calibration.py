"""cnnbench.training.calibration: ECE, NLL and Brier from the sums, the reliability bins, the
temperature fitted on validation only, and the numbers in every run's summary."""

from __future__ import annotations

import math

import pytest
import torch

from cnnbench.training import calibration, evaluate_checkpoint, train_run
from cnnbench.training import loop as loop_module
from cnnbench.training.calibration import BINS, CalibrationSums, fit_temperature
from cnnbench.config.resolve import resolve_config
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401

# (probability of class 0, true class): top confidences 0.9 and 0.92 share bin 13
# ((13/15, 14/15]), one right and one wrong; 0.75 is bin 11, 0.62 bin 9, 1.0 the last bin
CASES = [(0.9, 0), (0.08, 0), (0.75, 0), (0.38, 0), (1.0 - 1e-7, 0)]


def _sums(cases, temperature: float = 1.0) -> CalibrationSums:
    p = torch.tensor([c[0] for c in cases], dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()], 1).float()
    sums = CalibrationSums(torch.device("cpu"), temperature=temperature)
    sums.add(logits, torch.tensor([c[1] for c in cases]))
    return sums


def test_ece_nll_and_brier_by_hand():
    result = _sums(CASES).result()
    # (confidence, right?) per image: 0.9 right, 0.92 wrong, 0.75 right, 0.62 wrong, ~1 right
    # bin 13: accuracy 1/2, confidence 0.91 -> |0.5 - 0.91| for 2 images (not |1-.9| + |0-.92|)
    ece = (2 * abs(0.5 - 0.91) + abs(1 - 0.75) + abs(0 - 0.62) + abs(1 - (1 - 1e-7))) / 5
    assert result["ece"] == pytest.approx(ece, abs=1e-6)
    nll = -(math.log(0.9) + math.log(0.08) + math.log(0.75) + math.log(0.38) + math.log(1 - 1e-7)) / 5
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    brier = sum(2 * (1 - p) ** 2 for p, _ in CASES) / 5  # two classes: (p0 - 1)^2 + (p1 - 0)^2
    assert result["brier"] == pytest.approx(brier, rel=1e-5)


def test_reliability_bins():
    bins = _sums(CASES).result()["reliability"]
    assert bins["bins"] == BINS == 15
    assert bins["count"] == [0] * 9 + [1, 0, 1, 0, 2, 1]
    assert bins["accuracy"][13] == 0.5 and bins["accuracy"][9] == 0.0 and bins["accuracy"][14] == 1.0
    assert bins["confidence"][13] == pytest.approx(0.91, abs=1e-6)
    assert bins["confidence"][0] is None and bins["accuracy"][0] is None  # an empty bin


def test_a_perfectly_calibrated_model_has_no_calibration_error():
    torch.manual_seed(0)
    n = 60_000
    confidence = torch.rand(n) * 0.5 + 0.5  # two classes
    right = torch.rand(n) < confidence
    logits = torch.stack([confidence.log(), (1 - confidence).log()], 1)
    sums = CalibrationSums(torch.device("cpu"))
    sums.add(logits, (~right).long())  # class 0 is right with probability `confidence`
    assert sums.result()["ece"] < 0.01


def test_the_fitted_temperature_is_the_one_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20_000, 10, generator=g)
    targets = torch.multinomial((logits / 2.0).softmax(1), 1, generator=g)[:, 0]
    assert fit_temperature(logits, targets) == pytest.approx(2.0, rel=0.05)
    # within its range, deterministic, and it changes no prediction
    assert fit_temperature(logits, targets) == fit_temperature(logits, targets)
    assert calibration.TEMPERATURE_RANGE[0] <= fit_temperature(logits * 1e3, targets) <= 1e3


def test_scaled_sums_are_those_of_the_divided_logits():
    torch.manual_seed(1)
    logits, targets = torch.randn(500, 10), torch.randint(0, 10, (500,))
    scaled = CalibrationSums(torch.device("cpu"), temperature=0.7)
    plain = CalibrationSums(torch.device("cpu"))
    scaled.add(logits, targets)
    plain.add(logits / 0.7, targets)
    assert scaled.result() == plain.result()


def test_a_runs_summary_has_its_calibration_fitted_on_validation_only(tiny_folder, monkeypatch):
    fitted = []
    real_fit = loop_module.fit_temperature
    monkeypatch.setattr(loop_module, "fit_temperature",
                        lambda logits, targets: fitted.append(len(targets)) or real_fit(logits, targets))
    config = resolve_config(quick_options(tiny_folder, epochs=2, val_split=0.25))
    summary = train_run(config, out_dir=tiny_folder.out / "calibrated", progress=False)
    assert fitted == [summary["split"]["val"]] != [summary["split"]["test"]]
    assert 0 <= summary["test_ece"] <= 1 and 0 <= summary["test_brier"] <= 2
    assert summary["temperature"] > 0 and summary["test_nll_scaled"] <= summary["test_loss"] + 1e-9
    assert sum(summary["reliability"]["test"]["count"]) == summary["split"]["test"]
    # `eval` of best.ckpt reproduces every number, the temperature included
    again = evaluate_checkpoint(tiny_folder.out / "calibrated")
    assert (again["ece"], again["brier"], again["reliability"]) == (
        summary["test_ece"], summary["test_brier"], summary["reliability"]["test"])
    assert again["scaled"]["temperature"] == summary["temperature"]
    assert again["scaled"]["ece"] == summary["test_ece_scaled"]


def test_without_a_validation_split_no_temperature(tiny_folder):
    summary = train_run(resolve_config(quick_options(tiny_folder, epochs=1, val_split=0.0)),
                        out_dir=tiny_folder.out / "no-val", progress=False)
    assert summary["test_ece"] is not None and summary["temperature"] is None
    assert summary["test_ece_scaled"] is None and summary["reliability"]["test_scaled"] is None
