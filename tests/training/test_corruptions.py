"""cnnbench.training.corruptions: nine corruptions at five severities, deterministic and
batched, and `eval --corruptions` on a trained run."""

from __future__ import annotations

import json

import pytest
import torch

from cnnbench.cli import main
from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import evaluate_checkpoint, train_run
from cnnbench.training.corruptions import CORRUPTIONS, SEVERITIES, corrupt, evaluate_corruptions
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401


def digits(n: int = 8, size: int = 28, channels: int = 1) -> torch.Tensor:
    """Bright strokes on black, like MNIST: a box outline and a diagonal per image."""
    x = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    for i in range(n):
        a, b = 6 + i % 3, size - 7 - i % 4
        x[i, :, a:b, a] = x[i, :, a:b, b] = 220
        x[i, :, a, a:b] = x[i, :, b, a:b] = 200
        x[i, :, torch.arange(a, b), torch.arange(a, b)] = 255
    return x


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_deterministic_and_grows_with_severity(name):
    x = digits()
    changes = []
    for severity in SEVERITIES:
        once = corrupt(x, name, severity, seed=3)
        assert once.dtype == torch.uint8 and once.shape == x.shape
        assert torch.equal(once, corrupt(x, name, severity, seed=3, batch_size=3))  # any batching
        changes.append((once.float() - x.float()).abs().mean().item())
    assert changes[0] > 0 and changes[-1] > changes[0], changes


def test_the_seed_changes_only_the_random_corruptions():
    x = digits()
    for name in CORRUPTIONS:
        same = torch.equal(corrupt(x, name, 3, seed=0), corrupt(x, name, 3, seed=1))
        assert same == (name not in ("gaussian_noise", "elastic")), name


def test_what_each_corruption_does():
    x = torch.zeros(4, 1, 20, 20, dtype=torch.uint8)
    x[:, :, 10, 10] = 255  # one bright pixel
    moved = corrupt(x, "translation", 2, seed=0)  # 0.1 x 20 px = 2 px: right, left, down, up
    where = [divmod(int(img.flatten().argmax()), 20) for img in moved[:, 0]]
    assert where == [(10, 12), (10, 8), (12, 10), (8, 10)]
    grey = torch.full((2, 3, 8, 8), 100, dtype=torch.uint8)
    grey[:, :, :4] = 200
    low = corrupt(grey, "contrast", 1, seed=0).float()  # factor 0.4 towards the mean grey level
    assert (low[:, :, :4].mean() - low[:, :, 4:].mean()).item() == pytest.approx(0.4 * 100, abs=2)
    bright = corrupt(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), "brightness", 5, seed=0)
    assert bright.unique().tolist() == [round(0.5 * 255)]  # added, so black turns grey
    blocks = corrupt(torch.randint(0, 256, (1, 1, 20, 20), dtype=torch.uint8), "pixelate", 5)
    assert torch.equal(blocks[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2), blocks)


def test_unknown_names_and_severities_are_one_line():
    with pytest.raises(UserError, match="unknown corruption 'jepg' \\(did you mean jpeg\\?\\)"):
        corrupt(digits(), "jepg", 1)
    with pytest.raises(UserError, match="severity must be 1 to 5"):
        corrupt(digits(), "jpeg", 6)


def test_the_help_lists_every_corruption():
    from cnnbench.commands.eval import CORRUPTION_NAMES

    assert CORRUPTION_NAMES == tuple(CORRUPTIONS)


def test_eval_corruptions_on_a_trained_run(tiny_folder, capsys):
    out = tiny_folder.out / "robust"
    summary = train_run(resolve_config(quick_options(tiny_folder, epochs=1)), out_dir=out, progress=False)
    result = evaluate_corruptions(out, names=["rotation", "gaussian_noise"], seed=1)
    assert result["clean_acc"] == summary["test_acc"] == evaluate_checkpoint(out)["acc"]
    assert list(result["accuracy"]) == ["rotation", "gaussian_noise"]
    assert all(len(v) == 5 and all(0 <= a <= 1 for a in v) for v in result["accuracy"].values())
    accs = [a for v in result["accuracy"].values() for a in v]
    assert result["mean_corruption_acc"] == pytest.approx(sum(accs) / 10)
    assert result["relative_drop"] == pytest.approx(1 - result["mean_corruption_acc"] / result["clean_acc"])
    assert json.loads((out / "corruptions.json").read_text())["accuracy"] == result["accuracy"]
    again = evaluate_corruptions(out, names=["gaussian_noise"], seed=1, write=False)
    assert again["accuracy"]["gaussian_noise"] == result["accuracy"]["gaussian_noise"]
    fewer = evaluate_corruptions(out, names=["contrast"], images=10, write=False)
    assert fewer["n"] == 10 and all(a * 10 == round(a * 10) for a in fewer["accuracy"]["contrast"])

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--corruptions", "contrast"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[1].startswith("  contrast: ") and "mean under corruption" in said[-1]
    assert main(["eval", "--checkpoint", str(out), "--corruptions", "--split", "val"]) == 2
    assert "evaluates the test split" in capsys.readouterr().err


def test_a_subset_of_the_test_images_is_drawn_from_all_of_them():
    from cnnbench.training.corruptions import subset

    keep = subset(10_000, 200, seed=0)
    assert len(keep) == len(set(keep.tolist())) == 200 and keep.tolist() == sorted(keep.tolist())
    # a test set sorted by class (the CIFAR-10 JPEG mirror is) gives every class its share
    labels = torch.arange(10_000) // 1000
    assert labels[keep].bincount(minlength=10).min() >= 8
    assert torch.equal(keep, subset(10_000, 200, seed=0)) and not torch.equal(keep, subset(10_000, 200, seed=1))
