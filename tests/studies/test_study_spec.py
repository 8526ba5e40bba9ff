"""Study files (cnnbench.studies.spec): profiles, grids, seeds, key checks, shipped studies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnbench.errors import UserError
from cnnbench.studies import PROFILES, build_config, list_studies, load_study
from cnnbench.reference_metrics import REFERENCE_METRICS
from study_fixtures import TINY, write_study


def test_profiles_caps_and_overrides(tmp_path):
    path = write_study(tmp_path)
    full = {r.name: r.options for r in load_study(path, profile="full").runs}
    assert full["a"]["epochs"] == 3 and full["c"]["epochs"] == 5 and "limit_train" not in full["a"]
    cpu = {r.name: r.options for r in load_study(path, profile="cpu").runs}
    assert cpu["a"]["epochs"] == 2 and cpu["c"]["epochs"] == 2  # capped ...
    assert cpu["a"]["limit_train"] == 100
    study = dict(TINY, profiles={"cpu": {"cap": {"epochs": 4}}})
    cpu = {r.name: r.options for r in load_study(write_study(tmp_path, study), profile="cpu").runs}
    assert cpu["a"]["epochs"] == 3  # ... never raised
    overridden = load_study(path, profile="quick", overrides={"epochs": 2, "device": "cpu"})
    assert all(r.options["epochs"] == 2 and r.options["device"] == "cpu" for r in overridden.runs)

def test_a_runs_own_profile_entry_replaces_the_studys(tmp_path):
    study = dict(TINY, runs=[{"name": "a", "epochs": 7, "profiles": {"cpu": {}}},
                             {"name": "b", "epochs": 7}])
    runs = {r.name: r.options for r in load_study(write_study(tmp_path, study), profile="cpu").runs}
    assert runs["a"]["epochs"] == 7 and "limit_train" not in runs["a"]
    assert runs["b"]["epochs"] == 2 and runs["b"]["limit_train"] == 100

def test_grid_expansion_names_and_axes(tmp_path):
    study = dict(TINY, grid_table={"rows": "model", "cols": "optimizer"}, runs=[{
        "name": "{model}-{optimizer}",
        "grid": {"model": ["lenet5", "simple_cnn"],
                 "optimizer": [{"label": "sgd", "optimizer": "sgd", "lr": 0.01},
                               {"label": "adam", "optimizer": "adam", "lr": 0.001}]}}])
    runs = load_study(write_study(tmp_path, study), profile="quick").runs
    assert [r.name for r in runs] == ["lenet5-sgd", "lenet5-adam", "simple_cnn-sgd",
                                      "simple_cnn-adam"]
    assert runs[1].axes == {"model": "lenet5", "optimizer": "adam"}
    assert runs[1].options["optimizer"] == "adam" and runs[1].options["lr"] == 0.001

def test_model_aliases_give_a_reports_own_spelling_its_network_inside_the_study(tmp_path):
    """In the report of mnist-classics ``ResNet`` meant ResNet-34; outside it, cnnbench's
    ``ResNet`` is ResNet-18. The alias applies to runs and to ``--set model=...``."""
    study = dict(TINY, model_aliases={"ResNet": "resnet34"},
                 runs=[{"name": "a", "model": "ResNet"}, {"name": "b", "model": "lenet5"}])
    runs = {r.name: r.options["model"] for r in load_study(write_study(tmp_path, study)).runs}
    assert runs == {"a": "resnet34", "b": "lenet5"}
    overridden = load_study(write_study(tmp_path, study), overrides={"model": "ResNet"})
    assert {r.options["model"] for r in overridden.runs} == {"resnet34"}
    plain = load_study(write_study(tmp_path, dict(study, model_aliases=None)))
    assert build_config(plain.runs[0].options).model == "resnet18"


@pytest.mark.parametrize("change, message", [
    ({"runs": [{"name": "a", "init": "nope"}]}, "not a run of this study"),
    ({"runs": [{"name": "a", "init": "b"}, {"name": "b", "init": "a"}]}, "cycle"),
    ({"runs": [{"name": "a"}, {"name": "a"}]}, "duplicate run names"),
    ({"runs": [{"name": "a", "reference": {"value": "high"}}]}, "value must be a number"),
    ({"colour": "red"}, "unknown key"),
    ({"runs": [{"name": "a", "once": "yes"}]}, "once must be true or false"),
])
def test_study_file_mistakes_are_user_errors(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_study(write_study(tmp_path, dict(TINY, **change)), profile="quick")

def test_dataset_choice():
    cifar = load_study("cifar10-tricks", profile="quick", dataset="cifar10_jpeg")
    assert {r.options["dataset"] for r in cifar.runs} == {"cifar10_jpeg"}
    mnist = load_study("mnist-five", profile="quick", dataset="fashion_mnist")
    assert {r.options["dataset"] for r in mnist.runs} == {"fashion_mnist"}
    cross = load_study("cross-dataset", profile="quick", dataset="cifar10")
    assert {r.options["dataset"] for r in cross.runs} == {"mnist", "fashion_mnist", "cifar10"}
    with pytest.raises(UserError, match="several datasets"):
        load_study("cross-dataset", profile="quick", dataset="fashion_mnist")

@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_studies_resolve_to_valid_configs(profile):
    names = [name for name, _ in list_studies()]
    assert {"mnist-classics", "mnist-five", "optimizers", "cifar10-tricks", "alexnet-ablation",
            "cross-dataset"} <= set(names)
    for name in names:
        study = load_study(name, profile=profile, dataset="cifar10_jpeg"
                           if name in ("cifar10-tricks", "alexnet-ablation") else None)
        for run in study.runs:
            config = build_config(run.options, f"{name}/{run.name}")
            assert config.profile == profile
            if profile == "quick":
                assert config.limit_train is not None and config.limit_train <= 512
            for ref in run.references:
                assert re.fullmatch(r"00[0-4]:\d+", ref.source) and ref.metric in REFERENCE_METRICS


SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the lab reports (../shared/seeds) are not here")
def test_every_published_number_is_on_its_source_line():
    """Each shipped reference names the lab report line it comes from; that line must print the
    number (as the report wrote it: 97.0200%, 0.6415, 12m 31s, 44426, 3.3803min, ...)."""
    files = {p.name[:3]: p.read_text().splitlines() for p in SEEDS.glob("00*.txt")}
    checked = 0
    for name, _ in list_studies():
        for run in load_study(name, dataset="cifar10_jpeg" if "cifar" in name or "alexnet" in name
                              else None).runs:
            for ref in run.references:
                number, line = ref.source.split(":")
                text = files[number][int(line) - 1].replace(",", "")
                found = [float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", text)]
                value = ref.value[0] if isinstance(ref.value, tuple) else ref.value
                shown = {value, value / 100, value * 60 if ref.unit == "s" else value}
                if ref.unit == "min":  # "12m 31s" or "3.3803min"
                    minutes = re.search(r"(\d+)m (\d+)s", text)
                    if minutes:
                        found.append(int(minutes[1]) + int(minutes[2]) / 60)
                assert any(abs(f - v) <= 0.005 for f in found for v in shown), \
                    f"{name}/{run.name}: {ref.metric} {ref.value} not on {ref.source}: {text!r}"
                checked += 1
    assert checked >= 60

def test_shipped_recipes_match_the_reports():
    five = {r.name: build_config(r.options) for r in load_study("mnist-five").runs}
    assert {n: c.dropout for n, c in five.items()} == {
        "lenet": 0.0, "alexnet": 0.5, "resnet18": 0.5, "mobilenet_v1": 0.5, "googlenet": 0.2,
        "alexnet_large": 0.5, "resnet18-28px": 0.0, "lenet-54px": 0.0}
    assert {n: c.model for n, c in five.items()} == {
        "lenet": "lenet5_five", "alexnet": "alexnet_five", "resnet18": "resnet18_five",
        "mobilenet_v1": "mobilenet_v1_five", "googlenet": "googlenet_five",
        "alexnet_large": "alexnet_large_five", "resnet18-28px": "resnet18_five",
        "lenet-54px": "lenet5_five"}
    classics = {r.name: build_config(r.options) for r in load_study("mnist-classics").runs}
    assert {n: (c.model, c.lr, c.batch_size, c.epochs, c.resize or 28)
            for n, c in classics.items()} == {
        "lenet": ("lenet5_classics", 2e-4, 512, 100, 32),
        "alexnet": ("alexnet_classics", 1e-5, 128, 10, 224),
        "vgg16": ("vgg16_classics", 1e-5, 8, 10, 224),
        "resnet34": ("resnet34_classics", 1e-5, 64, 10, 224),
        "mobilenet_v2": ("mobilenet_v2_classics", 2e-4, 32, 10, 224)}
    assert all(c.optimizer == "adamw" and c.lr == 1e-3 and c.batch_size == 128
               and c.epochs == 5 and c.seed == 42 and c.val_split == 0.2 for c in five.values())
    assert five["lenet"].resize is None and five["googlenet"].resize == 56
    assert {n: c.stem for n, c in five.items() if n in ("resnet18", "mobilenet_v1", "googlenet",
                                                         "resnet18-28px")} == dict.fromkeys(
        ("resnet18", "mobilenet_v1", "googlenet", "resnet18-28px"), "imagenet")  # the counts need it
    assert {n: five[n].resize for n in ("alexnet_large", "resnet18-28px", "lenet-54px")} == {
        "alexnet_large": 224, "resnet18-28px": None, "lenet-54px": 54}
    ablation = {r.name: build_config(r.options) for r in load_study(
        "alexnet-ablation", dataset="cifar10_jpeg").runs}
    assert ablation["staged-batches"].stages() == [(32, 20), (128, 20), (256, 10)]
    tuned = ablation["tuned-lr"]
    assert (tuned.lr, tuned.milestones, tuned.gamma) == (0.05, [20, 40], 0.1)
    # the report trained on all 50,000 images and watched the test set every epoch
    assert all(c.val_split == 0 and c.monitor_test for c in ablation.values())
    tricks = {r.name: r for r in load_study("cifar10-tricks", dataset="cifar10_jpeg").runs}
    assert tricks["simple-cnn-aug-l2"].init == "simple-cnn-aug"
    assert [(r.metric, r.value) for r in tricks["resnet18-tuned"].references] == [
        ("max_epoch_test_acc", 91.26)]
    # 003:468-470: the tuned ResNet's load_state_dict is commented out: from scratch
    assert tricks["resnet18-tuned"].init is None
    assert tricks["resnet18-tuned-continued"].init == "resnet18"  # the other reading
    l2 = build_config(tricks["simple-cnn-aug-l2"].options)
    assert (l2.lr, l2.weight_decay, l2.milestones) == (7e-4, 5e-4, [10])
    assert l2.lr * l2.gamma == pytest.approx(1e-5)  # "0.0007, then 0.00001" (003:367)
    tuned = build_config(tricks["resnet18-tuned"].options)
    assert (tuned.model, tuned.lr, tuned.lr * tuned.final_lr_frac) == ("resnet18_tricks", 0.1, 0.001)
    # 003:37, 003:394-396: fine-tuned from pre-trained (ImageNet) parameters, the features only
    vgg = build_config(tricks["vgg16_bn-tuned"].options)
    assert tricks["vgg16_bn-tuned"].init is None and vgg.pretrained and vgg.init is None
    assert vgg.model == "vgg16_bn_tricks"
    assert tricks["vgg16_bn-tuned-continued"].init == "vgg16_bn"  # the other reading
    for name in ("resnet18-tuned", "vgg16_bn-tuned"):  # the same recipe in both readings
        a, b = build_config(tricks[name].options), build_config(tricks[f"{name}-continued"].options)
        assert a.replace(pretrained=False) == b, name
    # transfer: one pretraining; every seed of the MNIST runs on the same 600 images
    transfer = load_study("transfer", profile="cpu", seeds=3).runs
    assert [r.name for r in transfer if r.init is None][0] == "pretrain-fashion_mnist"
    assert {r.init for r in transfer if r.init} == {"pretrain-fashion_mnist"}
    mnist = [build_config(r.options) for r in transfer if r.base != "pretrain-fashion_mnist"]
    assert len(mnist) == 9 and {(c.limit_train, c.epochs, c.lr) for c in mnist} == {(600, 10, 0.02)}
    lp_ft = [build_config(r.options) for r in transfer if r.base == "mnist-1pct-lp-ft"]
    assert {(c.freeze, c.unfreeze_at) for c in lp_ft} == {("backbone", 2)}
