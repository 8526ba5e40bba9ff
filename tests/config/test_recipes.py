"""The named recipes: each one resolves, and a one-epoch quick run of `fast` works end to end."""

import json

import pytest
import torch

from cnnbench.cli import main
from cnnbench.config.recipes import list_recipes
from cnnbench.config.resolve import resolve_config
from conftest import write_cifar_batches


@pytest.fixture
def cifar_few_hundred(tmp_path, monkeypatch):
    """CIFAR-10 batches in torchvision's layout with 320 training and 64 test images."""
    write_cifar_batches(tmp_path / "data", monkeypatch, 320, 64, seed=5)
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("recipe", [r.name for r in list_recipes()])
@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "cifar10_jpeg"])
def test_every_recipe_resolves(recipe, dataset):
    config = resolve_config({"recipe": recipe, "dataset": dataset})
    assert config.recipe == recipe and config.dataset == dataset


def test_fast_recipe_quick_run_on_cifar(cifar_few_hundred):
    out = cifar_few_hundred / "run"
    rc = main(["train", "--recipe", "fast", "--dataset", "cifar10", "--epochs", "1", "--warmup-epochs", "0",
               "--num-threads", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "fastnet" and summary["tta"] == "mirror_translate"
    assert summary["recipe"] == "fast" and summary["split"] == {"train": 320, "val": 0, "test": 64}
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["epochs_completed"] == 1
    config = (out / "config.yaml").read_text()
    assert "whiten_init: true" in config and "altflip+translate" in config
    assert torch.isfinite(torch.tensor(summary["test_loss"]))
