"""`cnnbench models`: the table, --json, --summary and its errors."""

from __future__ import annotations

import json

from cnnbench.cli import main


def test_models_json_lists_every_model_with_counts(capsys):
    assert main(["models", "--dataset", "cifar10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_size"] == [3, 32, 32] and report["num_classes"] == 10
    rows = {r["name"]: r for r in report["models"]}
    assert len(rows) >= 20
    # report 001's AlexNetLarge has no stem switch: its 11x11/4 convolution and three pools
    # need 63 px (the report fed it 224 px); the row says so instead of counting
    too_small = rows.pop("alexnet_large_five")
    assert too_small["params"] is None and "smallest that works is 63x63" in too_small["error"]
    for row in rows.values():
        assert row["params"] > 0 and row["macs"] > 0 and row["flops"] == 2 * row["macs"], row
    assert rows["resnet18"]["params"] == 11_173_962 and rows["resnet18"]["stem"] == "small"
    assert 0.55e9 < rows["resnet18"]["macs"] < 0.57e9
    assert rows["alexnet_small"]["params"] == 2_091_274


def test_models_table_on_mnist_with_pattern(capsys):
    assert main(["models", "--dataset", "mnist", "--pattern", "lenet*"]) == 0
    out = capsys.readouterr().out
    assert "1x28x28" in out and "61,706" in out and "resnet18" not in out


def test_models_reports_lists_the_lab_report_networks_with_their_study(capsys):
    assert main(["models", "--reports", "--dataset", "cifar10", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows and all(r["study"] for r in rows.values()) and "resnet18" not in rows
    assert rows["vgg16_bn_tricks"]["study"] == "cifar10-tricks"
    assert rows["vgg16_bn_tricks"]["params"] == 33_646_666  # ../shared/seeds/003_12b1c3faa3378c9a.txt:237-334
    assert rows["lenet5_classics"]["study"] == "mnist-classics"
    assert rows["alexnet_small"]["study"] == "alexnet-ablation"
    assert main(["models", "--reports", "--dataset", "mnist", "--pattern", "*_five"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.endswith("M")]
    assert len(lines) == 5 and all(line.split()[2] == "mnist-five" for line in lines)
    assert "alexnet_large_five: input 1x28x28 is too small" in out  # 224 px in its report
    assert "44,426" in out  # lenet5_five, ../shared/seeds/001_ff525e450deaf5fe.txt:69
    assert main(["models", "--reports", "--pattern", "resnet50"]) == 2
    assert "no lab-report model matches" in capsys.readouterr().err


def test_models_reports_measures_each_network_at_its_studys_input(capsys):
    """Without --dataset, each lab-report network is built as its study trains it, so every
    count is the report's: 1x224 for report 000's networks, 1x56 with the ImageNet stem for
    report 001's, 3x32 for the CIFAR reports'."""
    assert main(["models", "--reports", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert {n: (r["input"], r["params"]) for n, r in rows.items()} == {
        "alexnet_classics": ("1x224x224", 26_817_226), "alexnet_five": ("1x56x56", 43_446_122),
        "alexnet_large_five": ("1x224x224", 58_299_082),
        "alexnet_small": ("3x32x32", 2_091_274), "googlenet_five": ("1x56x56", 5_977_530),
        "lenet5_classics": ("1x32x32", 61_706), "lenet5_five": ("1x28x28", 44_426),
        "mobilenet_v1_five": ("1x56x56", 3_216_650),
        "mobilenet_v2_classics": ("1x224x224", 2_310_874),
        "resnet18_five": ("1x56x56", 11_001_546), "resnet18_tricks": ("3x32x32", 11_173_962),
        "resnet34_classics": ("1x224x224", 21_283_530), "simple_cnn": ("3x32x32", 62_006),
        "vgg16_bn_tricks": ("3x32x32", 33_646_666), "vgg16_classics": ("1x224x224", 134_300_362)}


def test_models_input_size_and_summary(capsys):
    assert main(["models", "--input-size", "3,224,224", "--num-classes", "1000", "--pattern", "resnet50",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["models"][0]
    assert row["params"] == 25_557_032 and row["stem"] == "imagenet"
    assert main(["models", "--summary", "ResNet-18", "--dataset", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "layer4.1.bn2 (BatchNorm2d)" in out and "[-1, 512, 4, 4]" in out
    assert "Total params: 11,173,962" in out


def test_models_too_small_input_is_one_line_error(capsys):
    assert main(["models", "--summary", "alexnet", "--stem", "imagenet", "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "smallest that works is 63x63" in err and "--resize 63" in err


def test_models_bad_arguments(capsys):
    assert main(["models", "--input-size", "3,x,32"]) == 2
    assert "--input-size" in capsys.readouterr().err
    assert main(["models", "--pattern", "nope*"]) == 2
    assert main(["models", "--summary", "resnt18"]) == 2
    assert "did you mean resnet18" in capsys.readouterr().err
