"""The public Python API (``import cnnbench``): the README's example runs as written, and a
Python run trains exactly like the CLI with the same options."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cnnbench
from cnnbench.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- python-api:start -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no Python API example between the python-api markers"
    return block.group(1)


def test_readme_python_api_example_runs(tiny_mnist_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), "README.md (Python API)", "exec"), {})
    summary = json.loads((tmp_path / "runs" / "api-demo" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["recipe"] == "default"
    assert summary["model"] == "lenet5" and summary["epochs_completed"] == 1


def test_import_cnnbench_does_not_import_torch():
    code = "import sys, cnnbench, cnnbench.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_create_model_defaults_are_torchvisions():
    import torch

    with torch.device("meta"):
        model = cnnbench.create_model("resnet18")
    assert model.fc.out_features == 1000 and model.conv1.in_channels == 3
    assert model.stem == "imagenet"
    assert cnnbench.list_models("resnet*") == ["resnet18", "resnet18_five", "resnet18_tricks", "resnet34",
                                                "resnet34_classics", "resnet50", "resnet101", "resnet152"]


def test_python_and_cli_runs_with_the_same_options_train_the_same(tiny_mnist_env, tmp_path):
    """Guards against the API and the CLI resolving options differently (e.g. one applying the
    default recipe and the other not): same options, same seed -> identical weights."""
    options = dict(epochs=1, limit_train=40, limit_eval=8, num_threads=1, deterministic=True)
    api = cnnbench.train(progress=False, out=str(tmp_path / "api"), **options)
    argv = ["train", "--out", str(tmp_path / "cli"), "--quiet"]
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        argv += [flag] if value is True else [flag, str(value)]
    assert main(argv) == 0
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    for key in ("recipe", "model", "params", "test_acc", "test_loss", "best_val_acc"):
        assert api[key] == cli[key], key
    from cnnbench.training.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "api" / "last.ckpt")["model"]
    b = load_checkpoint(tmp_path / "cli" / "last.ckpt")["model"]
    assert all(a[k].equal(b[k]) for k in a)


def test_train_accepts_a_config_and_evaluate_a_run_directory(tiny_mnist_env, tmp_path):
    from cnnbench.config.resolve import resolve_config
    from cnnbench.errors import UserError

    config = resolve_config({"epochs": 1, "limit_train": 20, "limit_eval": 8, "recipe": "none"})
    summary = cnnbench.train(config, out_dir=tmp_path / "run", progress=False)
    assert summary["recipe"] is None
    assert cnnbench.evaluate(tmp_path / "run")["acc"] == summary["test_acc"]
    with pytest.raises(UserError, match="unknown option 'epoks'"):
        cnnbench.train(epoks=1)


def test_train_takes_a_yaml_file_and_refuses_other_things(tiny_mnist_env, tmp_path):
    from cnnbench.config.resolve import resolve_config
    from cnnbench.errors import UserError

    options = tmp_path / "run.yaml"
    options.write_text("epochs: 1\nlimit_train: 20\nlimit_eval: 8\nrecipe: none\n")
    summary = cnnbench.train(options, out_dir=tmp_path / "from-file", progress=False)
    assert summary["epochs"] == 1 and summary["recipe"] is None
    with pytest.raises(UserError, match="not list"):
        cnnbench.train(["epochs", 1])
    with pytest.raises(UserError, match="takes no recipe="):
        cnnbench.train(resolve_config({}), recipe="fast")


def test_a_resolved_recipe_config_is_not_moved_to_another_device():
    """The recipe chose that config's settings for its device; moving it would keep the wrong ones."""
    import pytest

    import cnnbench
    from cnnbench.config.resolve import resolve_config
    from cnnbench.errors import UserError

    config = resolve_config({"recipe": "fast", "dataset": "cifar10", "device": "cpu"})
    with pytest.raises(UserError, match="pass the options"):
        cnnbench.train(config, device="cuda")


def test_a_mistake_is_one_catchable_line_raised_at_the_callers_line(tmp_path, monkeypatch):
    """Missing data through the API: the CLI's one line, as an exception whose traceback ends
    at the API call, not deep inside the data loader (issue #30)."""
    import traceback

    import cnnbench
    from cnnbench.errors import UserError

    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    with pytest.raises(UserError) as info:
        cnnbench.train(dataset="mnist", epochs=1, out_dir=tmp_path / "run", progress=False)
    assert "\n" not in str(info.value) and "mnist" in str(info.value)
    inside = [f.filename for f in traceback.extract_tb(info.value.__traceback__)
              if "/cnnbench/" in f.filename.replace("\\", "/")]
    assert [Path(f).name for f in inside] == ["__init__.py"], inside


def test_create_model_pretrained_loads_torchvisions_imagenet_weights(tmp_path, monkeypatch):
    """`cnnbench.create_model(name, pretrained=True)` as timm's: the ImageNet file of the torch
    hub cache, whole at the defaults, a new head for 10 classes (the file here is a stand-in:
    torchvision's resnet18 with its own random weights)."""
    import torch
    import torchvision

    from cnnbench.errors import UserError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    with pytest.raises(UserError, match="resnet18-f37072fd.pth"):
        cnnbench.create_model("resnet18", pretrained=True)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    weights = torchvision.models.resnet18().state_dict()
    torch.save(weights, folder / "resnet18-f37072fd.pth")

    model = cnnbench.create_model("resnet18", pretrained=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    report = model.pretrained_report
    assert len(report.loaded) == report.total and not (report.replaced or report.new)

    small = cnnbench.create_model("resnet18", pretrained=True, num_classes=10)
    assert small.fc.out_features == 10 and not torch.equal(small.fc.weight[:10], weights["fc.weight"][:10])
    assert torch.equal(small.layer1[0].conv1.weight, weights["layer1.0.conv1.weight"])
    assert not hasattr(cnnbench.create_model("resnet18"), "pretrained_report")
