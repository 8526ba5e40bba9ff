"""The lab reports' runs beyond their main tables: report 001's AlexNetLarge, ResNet-18 at
28 px and LeNet at 54 px (mnist-five), report 004's Sigmoid networks and epoch-1 accuracies
(alexnet-ablation), and the two readings of report 003's tuned ResNet-18 and fine-tuned
VGG-16-BN (cifar10-tricks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnbench.models import create_model
from cnnbench.models.profile import count_params
from cnnbench.report.records import QUANTITIES, RunRecord
from cnnbench.studies import build_config, load_study, run_study
from report_fixtures import write_fake_run

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"


def _runs(name: str, profile: str = "full") -> dict:
    dataset = "cifar10_jpeg" if name in ("cifar10-tricks", "alexnet-ablation") else None
    return {r.name: r for r in load_study(name, profile=profile, dataset=dataset).runs}


def _line(source: str) -> str:
    number, line = source.split(":")
    path = next(SEEDS.glob(f"{number}_*.txt"))
    return path.read_text().splitlines()[int(line) - 1]


# --------------------------------------------------------------------------- report 001

def test_mnist_five_alexnet_large_is_the_un_reduced_alexnet_at_224px():
    run = _runs("mnist-five")["alexnet_large"]
    config = build_config(run.options)
    assert (config.model, config.resize, config.dropout) == ("alexnet_large_five", 224, 0.5)
    assert [(r.metric, r.value, r.source) for r in run.references] == [
        ("params", 58_299_082, "001:107")]
    assert "for time" in run.note and "001:111" in run.note


def test_mnist_five_resnet18_at_28px_and_lenet_at_54px():
    runs = _runs("mnist-five")
    resnet = build_config(runs["resnet18-28px"].options)
    assert (resnet.model, resnet.resize, resnet.stem, resnet.dropout) == (
        "resnet18_five", None, "imagenet", 0.0)
    assert [(r.metric, r.value, r.source) for r in runs["resnet18-28px"].references] == [
        ("test_acc", 97.5, "001:156")]
    lenet = build_config(runs["lenet-54px"].options)
    assert (lenet.model, lenet.resize) == ("lenet5_five", 54)
    # what the runs build (001:154-160: the ImageNet stem on 28 px images; 001:347: LeNet at
    # 54 px, its first fully connected layer 16x10x10 -> 120)
    with torch.device("meta"):
        assert create_model("resnet18_five", num_classes=10, in_chans=1, input_size=28,
                            stem=resnet.stem).stem == "imagenet"
        assert count_params(create_model("lenet5_five", num_classes=10, in_chans=1,
                                         input_size=54)) == 205_706
    assert runs["lenet-54px"].references == ()  # relative to run lenet: a note, not a reference
    assert "001:347" in runs["lenet-54px"].note and "run lenet" in runs["lenet-54px"].note
    # the recipe of the report's other runs (001:246, 001:252)
    base = build_config(runs["lenet"].options)
    for config in (resnet, lenet):
        assert (config.optimizer, config.lr, config.batch_size, config.epochs, config.seed,
                config.val_split) == (base.optimizer, base.lr, base.batch_size, base.epochs,
                                      base.seed, base.val_split)


def test_mnist_five_new_runs_are_cheap_in_the_cpu_and_quick_profiles():
    cpu, quick = _runs("mnist-five", "cpu"), _runs("mnist-five", "quick")
    large = build_config(cpu["alexnet_large"].options)
    assert (large.epochs, large.limit_train, large.limit_eval) == (1, 2000, 1000)
    assert build_config(quick["alexnet_large"].options).limit_train == 64
    assert build_config(cpu["resnet18-28px"].options).limit_train == 8000
    assert build_config(cpu["lenet-54px"].options).limit_train is None  # LeNet: full, as lenet


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the lab reports (../shared/seeds) are not here")
def test_the_relative_lenet_number_is_on_the_line_the_note_cites():
    """001:347: '更改LeNet的图片输入为54x54，可以提升百分之0.5的准确率' (+0.5 pp over LeNet at 28 px)."""
    note = _runs("mnist-five")["lenet-54px"].note
    source = re.search(r"001:347", note)[0]
    text = _line(source)
    assert "54x54" in text and "0.5" in text and "LeNet" in text


# --------------------------------------------------------------------------- report 004

def test_alexnet_ablation_sigmoid_runs():
    runs = _runs("alexnet-ablation")
    plain, bn = build_config(runs["sigmoid-plain"].options), build_config(runs["sigmoid-bn"].options)
    assert plain.model_kwargs == {"bn": False, "activation": "sigmoid"}
    assert bn.model_kwargs == {"bn": True, "activation": "sigmoid"}
    # the same recipe as the ReLU runs they are set against (plain, bn)
    for sigmoid, relu in ((plain, "plain"), (bn, "bn")):
        other = build_config(runs[relu].options)
        assert sigmoid.replace(model_kwargs={"bn": other.model_kwargs["bn"]}) == other, relu
    assert [runs[n].step_index for n in ("sigmoid-plain", "sigmoid-bn")] == [0, 1]
    assert runs["sigmoid-plain"].ablation == runs["sigmoid-bn"].ablation != runs["plain"].ablation
    assert all("004:81" in runs[n].note for n in ("sigmoid-plain", "sigmoid-bn"))
    for config in (plain, bn):  # Sigmoid in place of ReLU: the same parameters
        with torch.device("meta"):
            model = create_model(config.model, num_classes=10, in_chans=3, input_size=32,
                                 **config.model_kwargs)
            relu = create_model(config.model, num_classes=10, in_chans=3, input_size=32,
                                bn=config.model_kwargs["bn"])
        assert count_params(model) == count_params(relu)
        assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 7
    cpu = _runs("alexnet-ablation", "cpu")
    assert build_config(cpu["sigmoid-bn"].options).limit_train == 3000


def test_alexnet_ablation_epoch1_references():
    runs = _runs("alexnet-ablation")
    epoch1 = {name: [(r.value, r.source, r.comparable) for r in run.references
                     if r.metric == "epoch1_test_acc"] for name, run in runs.items()}
    assert epoch1["bn"] == [(65.0, "004:243", True)]
    assert epoch1["bn-dropout"] == [(60.0, "004:244", True)]
    assert epoch1["plain"] == [(10.0, "004:242", False)]  # "rises from 10%": a reading
    assert all(build_config(r.options).monitor_test for r in runs.values())


def test_epoch1_test_acc_is_the_test_monitor_of_the_first_epoch(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", test_acc=0.6, epochs=3, monitor_test=True)
    record = RunRecord.load(run_dir)
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["epoch"] == 1
    assert QUANTITIES["epoch1_test_acc"].read(record) == pytest.approx(first["epoch_test_acc"])
    assert QUANTITIES["epoch1_test_acc"].read(record) != QUANTITIES["max_epoch_test_acc"].read(record)
    plain = RunRecord.load(write_fake_run(tmp_path / "plain", epochs=3))  # no test monitor
    assert QUANTITIES["epoch1_test_acc"].read(plain) is None


# --------------------------------------------------------------------------- report 003

def test_tuned_runs_follow_the_reports_code_and_text_with_the_other_readings_as_extras():
    runs = _runs("cifar10-tricks")
    assert runs["resnet18-tuned"].init is None  # 003:470: load_state_dict commented out
    assert runs["resnet18-tuned-continued"].init == "resnet18"
    assert runs["vgg16_bn-tuned"].init is None  # 003:37, 003:394-396: pre-trained (ImageNet)
    assert build_config(runs["vgg16_bn-tuned"].options).pretrained
    assert runs["vgg16_bn-tuned-continued"].init == "vgg16_bn"
    assert not build_config(runs["vgg16_bn-tuned-continued"].options).pretrained
    study = load_study("cifar10-tricks", dataset="cifar10_jpeg")
    notes = " ".join(study.notes)
    assert "do not load" not in notes  # the misreading the notes stated
    assert "resnet18-tuned-continued" in notes and "vgg16_bn-tuned-continued" in notes
    assert "91 tensors" in notes


def test_vgg_fine_tuning_offline_ends_in_one_line(cifar_data, tmp_path, monkeypatch):
    """No ImageNet file in the torch hub cache and no network (tests are offline): the run
    fails at its start with one line naming the file and where to put it; nothing trains."""
    monkeypatch.setenv("CNNBENCH_DATA", str(cifar_data.root))
    monkeypatch.setenv("CNNBENCH_CACHE", str(cifar_data.cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    study = load_study("cifar10-tricks", profile="quick", overrides={"device": "cpu"})
    lines = []
    [outcome] = run_study(study, tmp_path / "out", only=["vgg16_bn-tuned"], progress=False,
                          log=lines.append)
    assert outcome.status == "failed"
    message = outcome.message
    assert "\n" not in message and message.startswith("--pretrained: vgg16_bn-6c64b313.pth")
    assert "whose features vgg16_bn_tricks starts from" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert any("FAILED: --pretrained: vgg16_bn-6c64b313.pth" in line for line in lines)
    summary = json.loads((tmp_path / "out" / "vgg16_bn-tuned" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary.get("epochs_completed", 0) == 0
