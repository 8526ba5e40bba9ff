"""Every registered model: forward/backward on small inputs, parameter counts against the papers
and torchvision, torchvision state_dict round trips, stems and input-size errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from cnnbench.errors import UserError
from cnnbench.models import create_model, list_models
from cnnbench.models.profile import count_macs, count_params

SMALL_INPUTS = [(1, 28, 28), (3, 32, 32)]

# Lab-report networks that do not fit a small input by design: (name, shape) -> the smallest
# square input that works, which the error must name.
TOO_SMALL_BY_DESIGN = {
    ("vgg16_bn_tricks", (1, 28, 28)): 32,  # five 2x2 pools, as ../shared/seeds/003_12b1c3faa3378c9a.txt:237-306
    # 11x11/4 and three 3x3/2 pools, fed 224 px (x8) in ../shared/seeds/001_ff525e450deaf5fe.txt:95-107
    ("alexnet_large_five", (1, 28, 28)): 63,
    ("alexnet_large_five", (3, 32, 32)): 63,
}


@pytest.mark.parametrize("shape", SMALL_INPUTS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_small_inputs(name, shape):
    torch.manual_seed(0)
    smallest = TOO_SMALL_BY_DESIGN.get((name, shape))
    if smallest:
        with pytest.raises(UserError, match=f"smallest that works is {smallest}x{smallest}"):
            create_model(name, num_classes=10, in_chans=shape[0], input_size=shape[1:])
        return
    model = create_model(name, num_classes=10, in_chans=shape[0], input_size=shape[1:])
    assert model.model_name == name
    assert model.stem in ("small", None)  # auto picks the small stem below 112 px
    model.train()
    out = model(torch.randn(2, *shape))
    assert isinstance(out, torch.Tensor)  # no auxiliary heads by default
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(torch.nn.utils.get_total_norm(grads))  # NaN or inf in any: not finite


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


# Parameter counts the papers and the lab reports give (see each model's docstring). Where a
# count comes from a lab report, ../shared/seeds/<file>:<line> is named; fastnet's is a hand
# count (test_fastnet_parameters_by_hand).
PAPER_COUNTS = [
    ("lenet5", dict(num_classes=10, in_chans=1, input_size=28), 61_706),                   # padded to 32
    ("lenet5", dict(num_classes=10, in_chans=1, input_size=28, pad_input=False), 44_426),  # 16x4x4 FC input
    ("lenet5", dict(num_classes=10, in_chans=1, input_size=32), 61_706),
    ("simple_cnn", dict(num_classes=10, in_chans=3, input_size=32), 62_006),
    ("mobilenet_v1", dict(num_classes=1000, in_chans=3, input_size=224), 4_231_976),      # "4.2M"
    ("alexnet_small", dict(num_classes=10, in_chans=3, input_size=32), 2_091_274),        # 004:179 "Total params"
    ("alexnet_paper", dict(num_classes=10, in_chans=1, input_size=224), 58_299_082),
    ("googlenet_paper", dict(num_classes=10, in_chans=1, input_size=56, stem="imagenet"), 5_977_530),  # 001:281
    ("googlenet_paper", dict(num_classes=10, in_chans=1, input_size=224), 5_977_530),
    ("resnet18", dict(num_classes=10, in_chans=3, input_size=32), 11_173_962),             # CIFAR ResNet-18
    ("fastnet", dict(num_classes=10, in_chans=3, input_size=32), 1_972_792),
]


@pytest.mark.parametrize("name,kw,expected", PAPER_COUNTS,
                         ids=[f"{n}-{kw['in_chans']}x{kw['input_size']}" + ("-nopad" if "pad_input" in kw else "")
                              for n, kw, _ in PAPER_COUNTS])
def test_parameter_counts_match_papers(name, kw, expected):
    assert count_params(_meta(name, **kw)) == expected


def test_alexnet_small_layers_match_the_ablation_reports_summary():
    """Per-layer parameter counts printed by torchsummary in the AlexNet ablation report
    (../shared/seeds/004_2d0eec9dd5bad1f5.txt, lines 115-179), in the order of its rows."""
    report = [2_688, 192, 307_328, 256, 295_168, 512, 590_080, 512, 295_040, 256,  # conv + BN
              589_952, 256, 8_256, 128, 650]                                          # FC + BN1d
    model = _meta("alexnet_small", num_classes=10, in_chans=3, input_size=32)
    layers = [m for m in model.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))]
    assert [count_params(m) for m in layers] == report


def test_fastnet_parameters_by_hand():
    """1,972,792 at 3x32x32 with 10 classes, counted by hand from the layout of airbench94
    (Jordan 2024), which fastnet follows: whitening 2x2 conv 3->24 with bias; three groups of
    two 3x3 convs without bias, each followed by BatchNorm (weight and bias); a linear head
    without bias. (airbench94 freezes the BN weights; they are still parameters.)"""
    whiten = 24 * 3 * 2 * 2 + 24
    groups = 0
    for cin, cout in ((24, 64), (64, 256), (256, 256)):
        groups += cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
    head = 256 * 10
    assert whiten + groups + head == 1_972_792
    assert count_params(_meta("fastnet", num_classes=10, in_chans=3, input_size=32)) == whiten + groups + head
    # on MNIST the whitening layer is 1->8 channels, so the first conv sees 8 channels, not 24
    mnist = 8 * 1 * 2 * 2 + 8 + 8 * 64 * 9 + (groups - 24 * 64 * 9) + head
    assert count_params(_meta("fastnet", num_classes=10, in_chans=1, input_size=28)) == mnist


def test_alexnet_small_switches():
    plain = _meta("alexnet_small", num_classes=10, in_chans=3, input_size=32, bn=False)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    assert count_params(plain) == 2_091_274 - 2 * (96 + 128 + 256 + 256 + 128 + 128 + 64)
    dropped = _meta("alexnet_small", num_classes=10, in_chans=3, input_size=32, drop_rate=0.5)
    dropouts = [m for m in dropped.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 2 and all(m.p == 0.5 for m in dropouts)
    assert not any(isinstance(m, nn.Dropout) for m in dropped.features)  # dropout only in FC


def test_resnet18_cifar_macs():
    assert count_macs(_meta("resnet18", num_classes=10, in_chans=3, input_size=32), (3, 32, 32)) == pytest.approx(
        0.556e9, rel=0.01)


# Every name torchvision also has; at 3x224x224 and 1000 classes the state_dicts must agree.
TORCHVISION_NAMES = ["alexnet", *[f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")],
                     *[f"resnet{d}" for d in (18, 34, 50, 101, 152)], "mobilenet_v2", "googlenet"]


def _torchvision(name, **kw):
    if name == "googlenet":
        kw = {"aux_logits": False, "init_weights": True, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(torchvision.models, name)(**kw)


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_same_parameters_and_keys_as_torchvision(name):
    assert set(TORCHVISION_NAMES) <= set(list_models())
    variants = [{"aux_logits": False}, {"aux_logits": True}] if name == "googlenet" else [{}]
    for kw in variants:
        ours = _meta(name, num_classes=1000, in_chans=3, input_size=224, **kw)
        with torch.device("meta"):
            theirs = _torchvision(name, **kw)
        assert ours.stem == "imagenet"
        assert count_params(ours) == count_params(theirs)
        assert {k: v.shape for k, v in ours.state_dict().items()} == \
               {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_state_dict_round_trip(name):
    """Every torchvision-named model, given torchvision's weights, computes exactly what
    torchvision's computes (ImageNet stem; a 64 px input keeps it fast: both end in an
    adaptive pool, so the layers are the same as at 224 px)."""
    # torchvision's own initialisation of VGG's 120M classifier weights takes a second; any
    # weights do here: built on the meta device, then filled from one seeded generator (each
    # tensor with its own random block of at most 64K values, tiled: drawing 120M values
    # takes most of a second too)
    with torch.device("meta"):
        theirs = _torchvision(name, num_classes=10)
    theirs = theirs.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in [*theirs.parameters(), *theirs.buffers()]:
            if tensor.is_floating_point():
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                bound = (6 / fan_in) ** 0.5 if tensor.dim() > 1 else 0.5  # He-uniform scale
                flat, n = tensor.view(-1), tensor.numel()
                block = torch.empty(min(n, 1 << 16)).uniform_(-bound, bound, generator=g)
                whole = n - n % block.numel()  # tiled in place: no temporary of the tensor's size
                flat[:whole].view(-1, block.numel()).copy_(block)
                flat[whole:].copy_(block[:n - whole])
                if tensor.dim() == 1:
                    tensor.add_(1.0)  # 1-D: BatchNorm weights, variances and biases around 1
            else:
                tensor.zero_()  # num_batches_tracked
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode BN is exercised
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = _meta(name, num_classes=10, in_chans=3, input_size=224)  # weights come from theirs
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    ours.eval()
    x = 8 * torch.randn(2, 3, 64, 64)  # large activations: ReLU6's clipping is exercised too
    with torch.no_grad():
        expected = theirs(x)
        assert expected.abs().max() > 0
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)


def test_googlenet_aux_heads_in_training_only():
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=10, in_chans=3, input_size=32, aux_logits=True)
    assert model.aux_weight == pytest.approx(0.3)
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert isinstance(out, tuple) and len(out) == 3 and all(o.shape == (2, 10) for o in out)
    (out[0].sum() + model.aux_weight * sum(o.sum() for o in out[1:])).backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.fc2.weight.grad is not None
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name,expected", [
    ("resnet18", ["conv1.weight"]),
    ("resnet50", ["conv1.weight"]),
    ("googlenet", ["conv1.conv.weight"]),
    ("mobilenet_v1", []),
    ("mobilenet_v2", []),
    ("vgg11", ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias",
               "classifier.6.weight"]),
    ("alexnet", ["classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
                 "classifier.6.weight", "features.0.weight"]),
])
def test_stems_differ_only_in_documented_tensors(name, expected):
    small = _meta(name, num_classes=1000, in_chans=3, input_size=224, stem="small").state_dict()
    big = _meta(name, num_classes=1000, in_chans=3, input_size=224, stem="imagenet").state_dict()
    assert small.keys() == big.keys()
    assert sorted(k for k in small if small[k].shape != big[k].shape) == sorted(expected)


def test_stem_auto_and_resnet_small_stem():
    assert _meta("resnet18", input_size=224, in_chans=3).stem == "imagenet"
    assert _meta("resnet18", input_size=56, in_chans=3).stem == "small"
    small = _meta("resnet18", input_size=32, in_chans=3)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)


def test_resnet_stride_in_1x1_moves_the_stride():
    v15 = _meta("resnet50", num_classes=1000, in_chans=3, input_size=224)
    v1 = _meta("resnet50", num_classes=1000, in_chans=3, input_size=224, stride_in_1x1=True)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert count_params(v1) == count_params(v15)


def test_lenet5_options():
    relu_max = _meta("lenet5", num_classes=10, in_chans=1, input_size=28, activation="relu", pool="max")
    assert isinstance(relu_max.features.act1, nn.ReLU) and isinstance(relu_max.features.s2, nn.MaxPool2d)
    with pytest.raises(UserError, match="activation"):
        create_model("lenet5", activation="swish")
    with pytest.raises(UserError, match="pool"):
        create_model("lenet5", pool="median")
    for channels in [(6,), (6, 0), (6, 16, 32), (6.0, 16), 6, None, (True, 16)]:
        with pytest.raises(UserError, match="channels must be two positive integers"):
            create_model("lenet5", channels=channels)
    for stride in (3, 2.0, True):
        with pytest.raises(UserError, match="c1_stride must be 1 or 2"):
            create_model("lenet5", c1_stride=stride)


def test_lenet5_with_a_strided_c1_leaves_s2_out_and_subsamples_c1s_map():
    """``c1_stride=2``: C1's map at every other pixel, no S2; ``channels`` sizes C1 and C3
    (and C5's input). Counted by hand at 1x28x28 padded to 32: C1 6x(25+1) = 156, C3
    32x(6x25+1) = 4,832, C5 (32x5x5 = 800 inputs) 800x120+120 = 96,120, F6 10,164, output 850."""
    torch.manual_seed(0)
    kw = dict(num_classes=10, in_chans=1, input_size=28, activation="relu", pool="max")
    strided = create_model("lenet5", c1_stride=2, channels=[6, 32], **kw)  # a list, as from YAML
    assert [name for name, _ in strided.features.named_children()] == ["c1", "act1", "c3", "s4", "act3"]
    assert count_params(strided) == 156 + 4_832 + 96_120 + 10_164 + 850 == 112_122
    plain = create_model("lenet5", channels=(6, 32), **kw)
    plain.load_state_dict(strided.state_dict())  # the same tensors, the same shapes
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(strided.features.c1(x), plain.features.c1(x)[..., ::2, ::2])
    assert strided(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("activation, pool", [("relu", "max"), ("tanh", "max"), ("gelu", "max"),
                                              ("relu", "avg"), ("sigmoid", "avg")])
def test_lenet5_features_compute_the_papers_order(activation, pool):
    """conv -> activation -> pool, as the paper and the reports; with max-pooling and a
    non-decreasing activation the model pools first (the same numbers, less work)."""
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1, input_size=32, activation=activation,
                         pool=pool)
    f = model.features
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "gelu": nn.functional.gelu}[activation]
    pooling = nn.functional.max_pool2d if pool == "max" else nn.functional.avg_pool2d
    x = torch.randn(4, 1, 32, 32)
    papers = pooling(act(f.c3(pooling(act(f.c1(x)), 2))), 2)
    torch.testing.assert_close(f(x), papers, rtol=0, atol=0)
    names = [name for name, _ in f.named_children()]
    pool_first = pool == "max" and activation != "gelu"  # GELU dips below zero: not monotone
    assert (names.index("s2") < names.index("act1")) == pool_first


def test_width_multipliers():
    half = _meta("mobilenet_v1", num_classes=1000, in_chans=3, input_size=224, width_mult=0.5)
    assert half.features[-1].pw[0].out_channels == 512
    assert count_params(half) < 4_231_976 / 2
    assert _meta("mobilenet_v2", num_classes=10, in_chans=3, input_size=32, width_mult=0.5).last_channel == 1280
    wide = _meta("fastnet", num_classes=10, in_chans=3, input_size=32, width_mult=2.0)
    assert wide.head.in_features == 512


def test_fastnet_whiten_layer():
    model = _meta("fastnet", num_classes=10, in_chans=1, input_size=28)
    assert isinstance(model.whiten, nn.Conv2d)
    assert model.whiten.kernel_size == (2, 2) and model.whiten.padding == (0, 0)
    assert model.whiten.out_channels == 2 * 1 * 2 * 2  # every whitening filter and its negation
    frozen = _meta("fastnet", num_classes=10, in_chans=3, input_size=32, bn_scale=False)
    assert count_params(frozen, trainable_only=True) == count_params(frozen) - 2 * (64 + 256 + 256)


@pytest.mark.parametrize("name,kw,smallest", [
    ("alexnet", dict(in_chans=3, input_size=32, stem="imagenet"), 63),
    ("vgg11", dict(in_chans=1, input_size=8), 16),
    ("fastnet", dict(in_chans=3, input_size=5), 9),
    ("lenet5", dict(in_chans=1, input_size=4, pad_input=False), 16),
])
def test_too_small_input_names_smallest_size(name, kw, smallest):
    with pytest.raises(UserError) as info:
        create_model(name, num_classes=10, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert f"smallest that works is {smallest}x{smallest}" in message
    assert f"--resize {smallest}" in message
