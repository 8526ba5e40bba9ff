"""Fine-tuning: --init from torchvision files and cnnbench checkpoints, input adaptation,
freezing (parameters and BatchNorm statistics), head/backbone learning rates, --pretrained.

CPU only, no network (conftest sets CNNBENCH_OFFLINE=1); torchvision models with random weights
stand in for the ImageNet-pretrained files, which are the same format.
"""

from __future__ import annotations

import copy
import functools
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from cnnbench.training import transfer
from cnnbench.training.optim import param_groups
from cnnbench.training.transfer import pretrained as pretrained_module
from cnnbench.training.checkpoint import save_checkpoint
from cnnbench.config import TrainConfig
from cnnbench.errors import UserError
from cnnbench.models import create_model


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so that loading them matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


@pytest.fixture(scope="module")
def tv_resnet18(tmp_path_factory):
    """torchvision's ResNet-18 with random weights, saved as a state_dict file (the format of
    ``resnet18-f37072fd.pth``)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    _randomise_bn(model)
    path = tmp_path_factory.mktemp("weights") / "resnet18-0123abcd.pth"
    torch.save(model.state_dict(), path)
    return SimpleNamespace(model=model, path=path)


@functools.lru_cache(maxsize=None)
def _small_resnet_prototype(num_classes, in_chans, seed):
    torch.manual_seed(seed)
    return create_model("resnet18", num_classes=num_classes, in_chans=in_chans, input_size=28)


def _small_resnet(num_classes=10, in_chans=1, seed=0):
    """ResNet-18 with the small-input stem at 28 px (a fresh copy; initialised once per seed)."""
    return copy.deepcopy(_small_resnet_prototype(num_classes, in_chans, seed))


# --------------------------------------------------------------------------- torchvision files

def test_torchvision_file_loads_with_identical_outputs(tv_resnet18):
    ours = create_model("resnet18", num_classes=1000, in_chans=3, input_size=224)
    report = transfer.load_init_weights(ours, tv_resnet18.path, num_classes=1000, in_chans=3)
    assert len(report.loaded) == report.total == len(ours.state_dict())
    assert not (report.replaced or report.adapted or report.new or report.ignored)
    assert report.kind == "state_dict" and "122 of 122 tensors loaded" in report.text()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv_resnet18.model(x), rtol=0, atol=0)


def test_ten_classes_replace_only_the_classifier(tv_resnet18):
    ours = create_model("resnet18", num_classes=10, in_chans=3, input_size=224)
    fresh_fc = copy.deepcopy(ours.fc.state_dict())
    report = transfer.load_init_weights(ours, tv_resnet18.path, num_classes=10, in_chans=3)
    assert sorted(report.replaced) == ["fc.bias", "fc.weight"]
    assert "1000 -> 10 classes" in report.replaced["fc.weight"]
    assert len(report.loaded) == report.total - 2 and not report.new and not report.adapted
    for key, value in fresh_fc.items():  # the head keeps its fresh initialisation
        assert torch.equal(ours.fc.state_dict()[key], value)
    features = {}
    for name, model in (("ours", ours), ("theirs", tv_resnet18.model)):
        model.fc.register_forward_hook(lambda m, inp, out, name=name: features.__setitem__(name, inp[0]))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours.eval()(x)
        tv_resnet18.model(x)
    torch.testing.assert_close(features["ours"], features["theirs"], rtol=0, atol=0)
    summary = report.to_dict()
    assert summary["loaded"] == report.total - 2 and summary["replaced"] == report.replaced
    assert summary["text"] == report.text() and "\n" not in summary["text"]


def test_small_stem_reinitialises_conv1_and_lists_it(tv_resnet18):
    ours = _small_resnet(num_classes=10, in_chans=3)
    fresh = ours.conv1.weight.detach().clone()
    report = transfer.load_init_weights(ours, tv_resnet18.path, num_classes=10, in_chans=3)
    assert list(report.new) == ["conv1.weight"] and "stem: 7x7" in report.new["conv1.weight"]
    assert torch.equal(ours.conv1.weight, fresh)
    assert torch.equal(ours.layer4[1].conv2.weight, tv_resnet18.model.layer4[1].conv2.weight)
    assert "new conv1.weight (stem" in report.text()


# --------------------------------------------------------------------------- 1-channel data

def test_rgb_kernels_on_gray_data_keep_the_first_layer_response(tv_resnet18):
    gray = create_model("resnet18", num_classes=10, in_chans=1, input_size=112)  # ImageNet stem
    report = transfer.load_init_weights(gray, tv_resnet18.path, num_classes=10, in_chans=1)
    assert list(report.adapted) == ["conv1.weight"]
    assert "summed" in report.adapted["conv1.weight"]
    g = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        rgb_response = tv_resnet18.model.conv1(g.expand(-1, 3, -1, -1))
        gray_response = gray.conv1(g)
    torch.testing.assert_close(gray_response, rgb_response, rtol=1e-5, atol=1e-5)


def test_gray_kernels_on_rgb_data_and_biases():
    torch.manual_seed(0)
    gray = create_model("lenet5", num_classes=10, in_chans=1, input_size=32)
    rgb = create_model("lenet5", num_classes=10, in_chans=3, input_size=32)
    report = transfer.load_init_weights(rgb, gray.state_dict())
    assert list(report.adapted) == ["features.c1.weight"] and not report.replaced
    g = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb.features.c1(g.expand(-1, 3, -1, -1)), gray.features.c1(g),
                                   rtol=1e-5, atol=1e-5)
    # and back: the RGB kernels summed reproduce the same response on the gray image
    back = create_model("lenet5", num_classes=10, in_chans=1, input_size=32)
    transfer.load_init_weights(back, rgb.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(back.features.c1(g), gray.features.c1(g), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- wrong files

def test_wrong_architecture_is_one_line_naming_keys_and_the_files_model(tv_resnet18):
    model = create_model("mobilenet_v2", num_classes=10, in_chans=3, input_size=32)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UserError) as info:
        transfer.load_init_weights(model, tv_resnet18.path)
    message = str(info.value)
    assert "\n" not in message
    assert "does not fit mobilenet_v2" in message and "missing in the file: features.0.0.weight" in message
    assert "seems to be for resnet18" in message and "--model resnet18" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_extra_blocks_and_other_widths_are_mismatches(tv_resnet18):
    weights = dict(torch.load(tv_resnet18.path, weights_only=True))
    weights["layer1.2.conv1.weight"] = torch.zeros(64, 64, 3, 3)  # as in a ResNet-34 file
    with pytest.raises(UserError, match=r"not in the model: layer1\.2\.conv1\.weight"):
        transfer.load_init_weights(_small_resnet(in_chans=3), weights)
    narrow = create_model("mobilenet_v2", num_classes=10, in_chans=3, input_size=32, width_mult=0.5)
    wide = create_model("mobilenet_v2", num_classes=10, in_chans=3, input_size=32)
    with pytest.raises(UserError) as info:
        transfer.load_init_weights(wide, narrow.state_dict())
    assert "other shape (file vs model): features.0.0.weight 16x3x3x3 vs 32x3x3x3" in str(info.value)
    assert "built with other options" in str(info.value)


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"definitely not a zip")
    with pytest.raises(UserError, match="corrupt, truncated or not a PyTorch weights file"):
        transfer.load_init_weights(_small_resnet(), path)
    torch.save({"epoch": 3}, tmp_path / "nostate.pth")
    with pytest.raises(UserError, match="holds no state_dict"):
        transfer.load_init_weights(_small_resnet(), tmp_path / "nostate.pth")
    with pytest.raises(UserError, match=r"holds no checkpoint \(no best.ckpt or last.ckpt\)"):
        transfer.load_init_weights(_small_resnet(), tmp_path)


# --------------------------------------------------------------------------- cnnbench checkpoints

def _checkpoint(tmp_path, model, dataset):
    run = tmp_path / f"pretrain-{dataset}"
    run.mkdir()
    save_checkpoint(run / "best.ckpt", {"kind": "best", "epoch": 2, "step": 20, "meta": {},
                                        "config": {"model": "resnet18", "dataset": dataset},
                                        "model": {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}})
    return run


def test_cnnbench_checkpoint_same_dataset_loads_everything(tmp_path):
    source = _small_resnet(seed=1).eval()
    _randomise_bn(source)
    run = _checkpoint(tmp_path, source, "fashion_mnist")
    for where in (run, run / "best.ckpt"):  # a run directory means its best.ckpt
        target = _small_resnet(seed=2)
        report = transfer.load_init_weights(target, where, dataset="fashion_mnist")
        assert report.kind == "cnnbench checkpoint" and report.source_model == "resnet18"
        assert len(report.loaded) == report.total and report.source.endswith("best.ckpt")
        x = torch.randn(2, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(target.eval()(x), source(x), rtol=0, atol=0)


def test_cnnbench_checkpoint_of_another_dataset_gets_a_fresh_head(tmp_path):
    run = _checkpoint(tmp_path, _small_resnet(seed=1), "fashion_mnist")
    target = _small_resnet(seed=2)
    fresh = target.fc.weight.detach().clone()
    report = transfer.load_init_weights(target, run, dataset="mnist")
    assert sorted(report.replaced) == ["fc.bias", "fc.weight"]
    assert "fashion_mnist classes are not mnist's" in report.text()
    assert torch.equal(target.fc.weight, fresh)
    kept = _small_resnet(seed=2)
    assert not transfer.load_init_weights(kept, run, dataset="mnist", head="keep").replaced
    assert sorted(transfer.load_init_weights(kept, run, head="reset").replaced) == ["fc.bias", "fc.weight"]


def test_cnnbench_checkpoint_of_another_model_says_so(tmp_path):
    run = _checkpoint(tmp_path, _small_resnet(), "cifar10")
    lenet = create_model("lenet5", num_classes=10, in_chans=1, input_size=28)
    with pytest.raises(UserError, match="cnnbench checkpoint of resnet18 on cifar10: use --model resnet18"):
        transfer.load_init_weights(lenet, run)


# --------------------------------------------------------------------------- the head

def test_head_is_found_generically():
    with torch.device("meta"):
        def heads(name, **kw):
            kw = {"num_classes": 10, "in_chans": 3, "input_size": 32, **kw}
            return transfer.head_module_names(create_model(name, **kw))
        assert heads("resnet18") == ["fc"]
        assert heads("vgg16") == ["classifier.6"]
        assert heads("mobilenet_v2") == ["classifier.1"]
        assert heads("lenet5") == ["classifier.output"]
        assert heads("fastnet") == ["head"]
        assert heads("googlenet", aux_logits=True) == ["fc", "aux1", "aux2"]


# --------------------------------------------------------------------------- freezing

def _step(model, optimizer, n=2):
    torch.manual_seed(5)
    for _ in range(n):
        optimizer.zero_grad(set_to_none=True)
        out = model(torch.randn(4, 1, 28, 28))
        nn.functional.cross_entropy(out, torch.arange(4)).backward()
        optimizer.step()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_frozen_backbone_and_its_batchnorm_statistics_do_not_change(optimizer):
    model = _small_resnet()
    groups = param_groups(model, TrainConfig(lr=0.1, head_lr=0.5, weight_decay=0.1))
    opt = (torch.optim.SGD(groups, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(groups))  # built before freezing: frozen params are in it
    frozen = transfer.freeze(model, "backbone")
    assert set(frozen) == {n for n, _ in model.named_parameters()} - {"fc.weight", "fc.bias"}
    before = copy.deepcopy(model.state_dict())
    model.train()  # what the engine does every epoch: must not wake the frozen BatchNorm up
    assert not model.bn1.training and not model.layer3[0].bn2.training and model.training
    _step(model, opt)
    after = copy.deepcopy(model.state_dict())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # running stats, weights, num_batches_tracked kept

    assert sorted(transfer.unfreeze(model)) == sorted(frozen)
    model.train()
    assert model.bn1.training and all(p.requires_grad for p in model.parameters())
    _step(model, opt)
    later = model.state_dict()
    assert not torch.equal(later["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])
    assert not torch.equal(later["bn1.running_mean"], after["bn1.running_mean"])


def test_frozen_batchnorm_survives_deepcopy():
    model = _small_resnet()
    transfer.freeze(model, "backbone")
    clone = copy.deepcopy(model)  # e.g. a weight-average copy
    clone.train()
    assert not clone.bn1.training and model.bn1.training is False
    assert set(model.state_dict()) == set(_small_resnet().state_dict())


def test_freeze_named_modules_and_errors():
    model = _small_resnet()
    names = transfer.freeze(model, "conv1,bn1,layer1")
    assert names and all(n.split(".")[0] in ("conv1", "bn1", "layer1") for n in names)
    assert model.layer2[0].conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    model.train()
    assert not model.layer1[0].bn1.training and model.layer2[0].bn1.training
    with pytest.raises(UserError, match="has no module layer9"):
        transfer.freeze(_small_resnet(), "layer9")
    assert transfer.freeze(_small_resnet(), "none") == []


def test_freeze_schedule_is_idempotent_and_unfreezes_on_time():
    model = _small_resnet()
    lines = [transfer.apply_freeze_schedule(model, "backbone", 2, epoch) for epoch in range(4)]
    assert lines[0].startswith("epoch 1: backbone frozen") and "5,130 parameters train" in lines[0]
    assert lines[1] is None and lines[3] is None
    assert lines[2].startswith("epoch 3: backbone unfrozen")
    assert all(p.requires_grad for p in model.parameters())
    resumed = _small_resnet()  # a resumed run starts at epoch 1: still frozen
    assert transfer.apply_freeze_schedule(resumed, "backbone", 2, 1) is not None
    assert not resumed.conv1.weight.requires_grad
    assert transfer.apply_freeze_schedule(_small_resnet(), "none", None, 0) is None


# --------------------------------------------------------------------------- learning rates

def test_param_groups_give_head_and_backbone_their_rates():
    model = _small_resnet()
    params = list(model.parameters())
    plain = TrainConfig(lr=0.1, bn_lr_scale=2.0, weight_decay=5e-4, decouple_wd=True,
                        optimizer="sgd")
    assert {g["name"] for g in param_groups(model, plain)} == {"weights", "norm"}
    split = param_groups(model, plain.replace(head_lr=1.0, backbone_lr=0.01))
    by_name = {g["name"]: g for g in split}
    assert set(by_name) == {"weights", "head_weights", "norm"}
    assert [id(p) for p in by_name["head_weights"]["params"]] == [id(model.fc.weight), id(model.fc.bias)]
    assert by_name["head_weights"]["lr"] == pytest.approx(1.0)
    assert by_name["weights"]["lr"] == pytest.approx(0.01) and by_name["norm"]["lr"] == pytest.approx(0.02)
    for g in ("weights", "head_weights", "norm"):  # decoupled decay per step stays 5e-4
        assert by_name[g]["lr"] * by_name[g]["weight_decay"] == pytest.approx(5e-4)
    ids = [id(p) for g in split for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in params)  # every parameter exactly once
    head_only = {g["name"]: g["lr"] for g in param_groups(model, plain.replace(head_lr=0.5))}
    assert head_only == pytest.approx({"head_weights": 0.5, "weights": 0.1, "norm": 0.2})


def test_fine_tuning_options_are_checked_by_the_config():
    ok = dict(freeze="backbone", unfreeze_at=2, epochs=5, head_lr=0.1)
    TrainConfig(**ok)
    for change, match in (({"init": "x.pth", "pretrained": True}, "not both"),
                          ({"freeze": "none"}, "needs --freeze"),
                          ({"unfreeze_at": 5}, "between 1 and epochs - 1"),
                          ({"head_lr": 0.0}, "head_lr must be a finite number > 0"),
                          ({"init_head": "maybe"}, "unknown init_head")):
        with pytest.raises(UserError, match=match):
            TrainConfig(**{**ok, **change})


# --------------------------------------------------------------------------- --pretrained

def test_pretrained_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(UserError) as info:
        transfer.pretrained_weights_path("ResNet-18")
    message = str(info.value)
    assert "\n" not in message and "resnet18-f37072fd.pth" in message
    assert str(folder) in message and "--init PATH" in message
    folder.mkdir(parents=True)
    (folder / "resnet18-f37072fd.pth").write_bytes(b"")  # already downloaded: no network needed
    assert transfer.pretrained_weights_path("resnet18") == folder / "resnet18-f37072fd.pth"
    with pytest.raises(UserError, match="no ImageNet weights for lenet5; it has them for alexnet"):
        transfer.pretrained_weights_path("lenet5")


def test_pretrained_downloads_when_online(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(pretrained_module, "_network_available", lambda url, timeout: True)
    calls = []

    def fake_download(url, path):
        calls.append(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        return path

    monkeypatch.setattr(pretrained_module, "_download", fake_download)
    path = transfer.pretrained_weights_path("vgg16_bn")
    assert calls == ["https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"]
    assert path.name == "vgg16_bn-6c64b313.pth" and path.read_bytes() == b"weights"


def test_pretrained_report_vgg_takes_only_torchvisions_features(tmp_path, monkeypatch):
    """vgg16_bn_tricks (../shared/seeds/003_12b1c3faa3378c9a.txt:237-334) has torchvision's
    vgg16_bn features (91 tensors, same names and shapes) and a classifier of its own:
    --pretrained loads the features from vgg16_bn's ImageNet file and leaves the whole
    classifier fresh, although classifier.3 (4096x4096) would fit. The file is a stand-in
    with random features (float16, as small as it gets) and stride-0 classifier tensors."""
    from cnnbench.data import get_spec
    from cnnbench.training.setup import load_init

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16_bn().state_dict().items()}
    torch.manual_seed(0)
    file = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            file[key] = torch.tensor(5)
        elif key.startswith("features."):
            file[key] = torch.rand(shape).half() + (0.5 if "running_var" in key else -0.5)
        else:
            file[key] = torch.full((1,), 0.25).expand(*shape)  # no memory
    torch.save(file, folder / "vgg16_bn-6c64b313.pth")
    assert transfer.pretrained_source("vgg16_bn_tricks") == ("vgg16_bn", ("features",))
    assert "vgg16_bn_tricks" in transfer.pretrained_models()

    config = TrainConfig(model="vgg16_bn_tricks", dataset="cifar10", pretrained=True)
    model = create_model("vgg16_bn_tricks", num_classes=10, in_chans=3, input_size=32)
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("classifier.")}
    report = load_init(model, config, get_spec("cifar10"))
    state = model.state_dict()
    assert len(report.loaded) == 91 and report.total == 97
    assert all(k.startswith("features.") for k in report.loaded)
    assert all(torch.equal(state[k], file[k].to(state[k].dtype)) for k in report.loaded)
    assert set(report.new) == set(fresh) and not report.replaced
    assert all(torch.equal(state[k], v) for k, v in fresh.items())  # the classifier stays fresh
    assert "91 of 97 tensors loaded" in report.text() and "only features taken from the file" in report.text()
    # torchvision's own model still loads the whole file
    assert transfer.pretrained_source("vgg16_bn") == ("vgg16_bn", None)


def test_pretrained_report_vgg_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError) as info:
        transfer.pretrained_weights_path("vgg16_bn_tricks")
    message = str(info.value)
    assert "\n" not in message and message.startswith("--pretrained: vgg16_bn-6c64b313.pth")
    assert "torchvision's ImageNet weights for vgg16_bn, whose features vgg16_bn_tricks starts from" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--init" not in message  # --init would load every tensor that fits, not the features


def test_init_modules_must_exist(tv_resnet18):
    with pytest.raises(UserError, match="has no module features"):
        transfer.load_init_weights(_small_resnet(), tv_resnet18.path, modules=("features",))
