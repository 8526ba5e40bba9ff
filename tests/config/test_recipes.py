"""The named recipes: each one resolves for the datasets it covers, per-device settings apply on
their device only, and a one-epoch quick run of `fast` works end to end (with ``amp auto``)."""

import json
import re

import pytest
import torch
import yaml

from cnnbench.cli import main
from cnnbench.config.recipes import Recipe, describe, list_recipes, register_recipe
from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
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
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_recipe_resolves(recipe, dataset, device):
    covered = next(r for r in list_recipes() if r.name == recipe).per_dataset
    if covered and dataset not in covered:
        with pytest.raises(UserError, match=f"no settings for dataset '{dataset}'"):
            resolve_config({"recipe": recipe, "dataset": dataset, "device": device})
        return
    config = resolve_config({"recipe": recipe, "dataset": dataset, "device": device})
    assert config.recipe == recipe and config.dataset == dataset


def test_fast_recipe_settings_depend_on_the_device():
    cpu = resolve_config({"recipe": "fast", "dataset": "cifar10_jpeg", "device": "cpu"})
    gpu = resolve_config({"recipe": "fast", "dataset": "cifar10_jpeg", "device": "cuda"})
    assert (cpu.batch_size, cpu.lr, cpu.model_kwargs["widths"]) == (256, 0.375, [64, 128, 256])
    assert (gpu.batch_size, gpu.lr, gpu.model_kwargs["widths"]) == (1024, 1.5, [64, 256, 256])
    assert cpu.amp == gpu.amp == "auto" and gpu.whiten_init and gpu.tta == cpu.tta
    # flags still win over the device's settings
    assert resolve_config({"recipe": "fast", "dataset": "cifar10", "device": "cuda",
                           "batch_size": 512}).batch_size == 512
    # MNIST has no GPU-specific settings: the same recipe on both
    assert (resolve_config({"recipe": "fast", "dataset": "mnist", "device": "cuda"}).to_dict()
            | {"device": "cpu"}) == resolve_config({"recipe": "fast", "dataset": "mnist",
                                                     "device": "cpu"}).to_dict()


def test_device_auto_picks_the_settings_of_the_visible_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_config({"recipe": "fast", "dataset": "cifar10"}).batch_size == 1024
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_config({"recipe": "fast", "dataset": "cifar10"}).batch_size == 256


def test_fast_long_is_fast_with_a_wider_network_for_longer():
    fast = resolve_config({"recipe": "fast", "dataset": "cifar10_jpeg", "device": "cpu"}).to_dict()
    long = resolve_config({"recipe": "fast-long", "dataset": "cifar10_jpeg", "device": "cpu"}).to_dict()
    differ = {k for k in fast if fast[k] != long[k]}
    assert differ == {"recipe", "epochs", "model_kwargs"}
    assert long["epochs"] > fast["epochs"] and long["model_kwargs"]["widths"] == [64, 256, 256]


def test_per_device_settings_need_the_dataset_and_are_described(monkeypatch):
    from cnnbench.config import recipes

    monkeypatch.setattr(recipes, "RECIPES", dict(recipes.RECIPES))
    with pytest.raises(ValueError, match="no settings for"):
        register_recipe(Recipe("bad", "", "", per_dataset={"mnist": {}},
                               per_device={"cuda": {"cifar10": {"batch_size": 8}}}))
    with pytest.raises(UserError, match="batch_sise"):
        register_recipe(Recipe("typo", "", "", per_dataset={"mnist": {}},
                               per_device={"cuda": {"mnist": {"batch_sise": 8}}}))
    text = describe(recipes.RECIPES["fast"])
    assert "settings for cifar10_jpeg on cuda (on top of the above):" in text
    assert "  batch_size: 1024" in text.split("on cuda")[1]


@pytest.mark.parametrize("name", [r.name for r in list_recipes()])
def test_a_recipes_settings_read_as_a_config_file_writes_them(name):
    """``cnnbench recipes NAME`` shows each setting as YAML (what a config file or
    ``--model-kwargs`` takes: ``false``, not Python's ``False``); each block reads back as the
    recipe's values, and a long value wraps onto indented lines, never past the width."""
    recipe = next(r for r in list_recipes() if r.name == name)
    text = describe(recipe, width=60)
    blocks = dict(re.findall(r"^settings(?: for (\S+))?:\n((?:  .*\n?)+)", text, re.M))
    assert max(len(line) for block in blocks.values() for line in block.splitlines()) <= 60
    for dataset, values in [("", recipe.defaults), *recipe.per_dataset.items()]:
        if values:
            assert yaml.safe_load(blocks[dataset]) == values, dataset
    if name == "fast":
        wide = describe(recipe, width=1000)
        assert ("  model_kwargs: {activation: relu, pool: max, c1_stride: 2, channels: [6, 32], "
                "pad_input: false}\n") in wide
        assert "\n  channels_last: true\n" in wide
        narrow = blocks["mnist"].splitlines()
        assert narrow[1].startswith("  model_kwargs: {") and narrow[2].startswith("      ")


def test_a_setting_that_is_no_yaml_value_is_shown_as_python_shows_it():
    from pathlib import PurePosixPath

    recipe = Recipe("from-python", "set in Python", "", defaults={"data_dir": PurePosixPath("/data/x")})
    assert "\n  data_dir: /data/x" in describe(recipe)


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
    # amp auto: the run records the precision it used, bf16 where this CPU computes it natively
    # and was measured to train faster in it (cnnbench.devices)
    from cnnbench.devices import resolve_amp

    assert "amp: auto" in config
    assert summary["amp"] == resolve_amp("auto", torch.device("cpu"))


@pytest.mark.parametrize("where", ["flags", "file"])
def test_the_recipes_device_is_read_from_a_config_file_as_from_a_flag(where, tmp_path):
    """``device: cuda`` in a config file picks the recipe's GPU settings just as ``--device
    cuda`` does (resolving needs no GPU): fast on CIFAR-10 is batch 1024 at lr 1.5 there,
    batch 256 at lr 0.375 on the CPU."""
    options = {"recipe": "fast", "dataset": "cifar10", "device": "cuda"}
    if where == "file":
        path = tmp_path / "run.yaml"
        path.write_text("".join(f"{k}: {v}\n" for k, v in options.items()))
        config = resolve_config({}, config_file=path)
    else:
        config = resolve_config(options)
    assert (config.device, config.batch_size, config.lr) == ("cuda", 1024, 1.5)
    cpu = resolve_config({**options, "device": "cpu"})
    assert (cpu.batch_size, cpu.lr) == (256, 0.375)
