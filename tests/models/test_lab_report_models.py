"""The lab reports' networks (``../shared/seeds/*.txt``), registered as named variants with the
study that reproduces each report: parameter counts, and the layout details that the counts
alone would not catch (report 000's one Tanh and MobileNetV2 shortcuts, report 001's shared
shortcut weights, report 004's BatchNorm momentum)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models.mobilenet import V2_SETTING
from cnnbench.models.profile import count_params

R000 = "../shared/seeds/000_5fb1d57efed289c0.txt"  # study mnist-classics
R001 = "../shared/seeds/001_ff525e450deaf5fe.txt"  # study mnist-five
R003 = "../shared/seeds/003_12b1c3faa3378c9a.txt"  # study cifar10-tricks
R004 = "../shared/seeds/004_2d0eec9dd5bad1f5.txt"  # study alexnet-ablation


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


def _shape(in_chans, size, **kw):
    return dict(num_classes=10, in_chans=in_chans, input_size=size, **kw)


# One case per report network, at the report's input size: (name, create_model keywords,
# parameters, where the layout or the count comes from). Report 000 prints no counts: its
# counts follow from the layout in its code; reports 001 and 004 print them.
REPORT_COUNTS = [
    ("lenet5_classics", _shape(1, 32), 61_706, f"{R000}:62-84 Linear(400,120): 16x5x5 at 32 px"),
    ("alexnet_classics", _shape(1, 224), 26_817_226, f"{R000}:105-137"),
    ("resnet34_classics", _shape(1, 224), 21_283_530, f"{R000}:164-342"),
    ("vgg16_classics", _shape(1, 224), 134_300_362, f"{R000}:389-433"),
    ("mobilenet_v2_classics", _shape(1, 224), 2_310_874, f"{R000}:497-564 (hand count below)"),
    ("lenet5_five", _shape(1, 28), 44_426, f"{R001}:69 and :277 (printed)"),
    ("alexnet_five", _shape(1, 56), 43_446_122, f"{R001}:117 and :278 (printed)"),
    ("alexnet_large_five", _shape(1, 224), 58_299_082, f"{R001}:107 (printed; x8 upsampling :98)"),
    ("resnet18_five", _shape(1, 56, stem="imagenet"), 11_001_546, f"{R001}:166 and :279 (printed)"),
    ("mobilenet_v1_five", _shape(1, 56, stem="imagenet"), 3_216_650, f"{R001}:280 (printed)"),
    ("googlenet_five", _shape(1, 56, stem="imagenet"), 5_977_530, f"{R001}:281 (printed)"),
    ("simple_cnn", _shape(3, 32), 62_006, f"{R003}:145-162"),
    ("resnet18_tricks", _shape(3, 32), 11_173_962, f"{R003}:166-231"),
    ("vgg16_bn_tricks", _shape(3, 32), 33_646_666, f"{R003}:237-334"),
    ("alexnet_small", _shape(3, 32), 2_091_274, f"{R004}:179 (printed)"),
]


@pytest.mark.parametrize("name,kw,expected,source", REPORT_COUNTS, ids=[c[0] for c in REPORT_COUNTS])
def test_report_network_parameter_counts(name, kw, expected, source):
    assert count_params(_meta(name, **kw)) == expected, source


def test_every_report_network_has_a_count_and_a_cited_docstring():
    studies = {"_classics": "mnist-classics", "_five": "mnist-five", "_tricks": "cifar10-tricks"}
    reports = {n for n in list_models() if model_info(n).study}
    assert reports == {c[0] for c in REPORT_COUNTS}
    for name, _, count, _ in REPORT_COUNTS:
        info = model_info(name)
        for suffix, study in studies.items():
            if name.endswith(suffix):
                assert info.study == study, name
        first_line = info.doc.split("\n\n")[0]
        assert "../shared/seeds/" in first_line and ".txt:" in first_line, name
        assert f"{count:,}" in info.doc, name


def test_mobilenet_v2_classics_count_by_hand():
    """2,310,874 counted from report 000's code (R000:497-564): conv biases everywhere, BN
    (weight + bias) after every convolution but the head's, the expansion also for t = 1, a
    1x1 conv + BN shortcut on stride-1 blocks whose channels change."""
    def conv(cin, cout, k=1, groups=1):
        return cout * (cin // groups) * k * k + cout

    total = conv(1, 32, 3) + 2 * 32
    cin = 32
    for t, c, n, s in V2_SETTING:
        for i in range(n):
            stride, hidden = (s if i == 0 else 1), cin * t
            total += conv(cin, hidden) + 2 * hidden + conv(hidden, hidden, 3, hidden) + 2 * hidden
            total += conv(hidden, c) + 2 * c
            if stride == 1 and cin != c:
                total += conv(cin, c) + 2 * c
            cin = c
    total += conv(320, 1280) + 1280 * 10 + 10
    assert total == 2_310_874
    assert count_params(_meta("mobilenet_v2_classics", **_shape(1, 224))) == total


def test_lenet5_classics_has_one_tanh_after_f6_and_no_other_activation():
    """R000:62-84: no activation after the convolutions or Linear(400,120); one Tanh after
    Linear(120,84)."""
    model = _meta("lenet5_classics", **_shape(1, 32))
    activations = [(name, m) for name, m in model.named_modules()
                   if type(m).__module__ == "torch.nn.modules.activation"]
    assert [(name, type(m)) for name, m in activations] == [("classifier.act6", nn.Tanh)]
    names = [name for name, _ in model.classifier.named_children()]
    assert names.index("act6") == names.index("f6") + 1
    # 28 px works too (study mnist-classics resizes to 32): F5 sized from the 16x4x4 map
    assert model.classifier.c5.in_features == 400
    assert _meta("lenet5_classics", **_shape(1, 28)).classifier.c5.in_features == 256


def test_resnet18_five_shortcut_is_the_blocks_own_conv1():
    """R001:144-150: where the shape changes, the shortcut is
    ``F.conv2d(x, block.conv1.weight, stride=block.stride, padding=1)``: no projection, no BN."""
    torch.manual_seed(0)
    model = create_model("resnet18_five", **_shape(1, 32)).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert not any(m.kernel_size == (1, 1) for m in convs)  # no projection anywhere
    for layer, cin, size in ((model.layer2, 64, 16), (model.layer3, 128, 8), (model.layer4, 256, 4)):
        block = layer[0]
        assert block.downsample is None and block.stride == 2
        with torch.no_grad():
            block.bn2.weight.zero_()  # the residual branch now outputs 0: only the shortcut is left
            block.bn2.bias.zero_()
            x = torch.randn(2, cin, size, size)
            expected = F.relu(F.conv2d(x, block.conv1.weight, stride=2, padding=1))
            assert expected.abs().max() > 0
            torch.testing.assert_close(block(x), expected)
    block = model.layer1[0]  # stride 1, 64 -> 64: the identity
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        x = torch.randn(2, 64, 8, 8)
        torch.testing.assert_close(block(x), F.relu(x))


def test_mobilenet_v2_classics_shortcuts_and_stem():
    """R000:497-564: a shortcut on every stride-1 block (identity or 1x1 conv + BN), none on
    stride-2 blocks, no activation after the add; stem conv (with bias) + BN, no activation;
    head conv 1x1 with bias and nothing after it but the pool."""
    torch.manual_seed(0)
    model = create_model("mobilenet_v2_classics", **_shape(1, 32)).eval()
    stem, *blocks, head = model.features
    assert [type(m) for m in stem] == [nn.Conv2d, nn.BatchNorm2d] and stem[0].bias is not None
    assert stem[0].stride == (2, 2)
    assert isinstance(head, nn.Conv2d) and head.bias is not None and head.out_channels == 1280
    assert len(blocks) == sum(n for _, _, n, _ in V2_SETTING) == 17
    strides = [b.conv[3].stride[0] for b in blocks]
    assert [b.shortcut is not None for b in blocks] == [s == 1 for s in strides]
    projections = [b for b in blocks if isinstance(b.shortcut, nn.Sequential)]
    assert [(p.conv[0].in_channels, p.conv[-2].out_channels) for p in projections] == [(32, 16), (64, 96), (160, 320)]
    assert blocks[0].conv[0].kernel_size == (1, 1) and blocks[0].conv[0].out_channels == 32  # t = 1 expands too
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    identity = blocks[2]  # 24 -> 24, stride 1
    assert isinstance(identity.shortcut, nn.Identity)
    with torch.no_grad():
        identity.conv[-1].weight.zero_()
        identity.conv[-1].bias.zero_()
        x = torch.randn(2, 24, 8, 8)
        torch.testing.assert_close(identity(x), x)  # negatives survive: no activation after the add
        assert (stem(torch.randn(2, 1, 8, 8)) < 0).any()  # no activation in the stem


def test_alexnet_small_batchnorm_momentum_is_the_reports():
    """R004:94 prints ``BatchNorm2d(96, eps=1e-05, momentum=0.9, ...)``."""
    model = _meta("alexnet_small", **_shape(3, 32))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == 7 and all(m.momentum == 0.9 for m in norms)
    pytorch = _meta("alexnet_small", **_shape(3, 32), bn_momentum=0.1)
    assert all(m.momentum == 0.1 for m in pytorch.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))


def test_alexnet_five_layout():
    """R001:113: conv1 5x5 stride 1, widths halved; 56 -> 28 -> 14 -> 7 with padded 3x3/2 pools."""
    model = _meta("alexnet_five", **_shape(1, 56))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 128, 192, 192, 128]
    assert (convs[0].kernel_size, convs[0].stride, convs[0].padding) == ((5, 5), (1, 1), (2, 2))
    assert model.classifier[1].in_features == 128 * 7 * 7 and model.stem is None
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [4096, 4096, 10]


def test_alexnet_large_five_layout():
    """R001:95-107: the paper's layout on 224 px (x8): 11x11/4, 96-256-384-384-256, unpadded
    3x3/2 pools (55 -> 27 -> 13 -> 6), 256x6x6 flattened into FC-4096; alexnet_five is it
    reduced (R001:113: conv1 5x5/1, widths halved)."""
    model = _meta("alexnet_large_five", **_shape(1, 224))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert (convs[0].kernel_size, convs[0].stride, convs[0].padding) == ((11, 11), (4, 4), (2, 2))
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all((p.kernel_size, p.stride, p.padding) == (3, 2, 0) for p in pools)
    assert model.classifier[1].in_features == 256 * 6 * 6 and model.stem is None
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [4096, 4096, 10]
    reduced = _meta("alexnet_five", **_shape(1, 56))
    halved = [m.out_channels for m in reduced.features if isinstance(m, nn.Conv2d)]
    assert halved == [c.out_channels // 2 for c in convs]


def test_alexnet_small_activation_switch():
    """R004:81-83: Sigmoid tried against ReLU; the keyword swaps every activation, nothing
    else (same parameters)."""
    relu = _meta("alexnet_small", **_shape(3, 32))
    sigmoid = _meta("alexnet_small", **_shape(3, 32), activation="sigmoid")
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 7
    assert not any(isinstance(m, nn.Sigmoid) for m in relu.modules())
    assert sum(isinstance(m, nn.Sigmoid) for m in sigmoid.modules()) == 7
    assert not any(isinstance(m, nn.ReLU) for m in sigmoid.modules())
    assert count_params(sigmoid) == count_params(relu) == 2_091_274
    plain = _meta("alexnet_small", **_shape(3, 32), bn=False, activation="sigmoid")
    assert sum(isinstance(m, nn.Sigmoid) for m in plain.modules()) == 7
    from cnnbench.errors import UserError
    with pytest.raises(UserError, match="activation must be one of"):
        _meta("alexnet_small", **_shape(3, 32), activation="swish")


def test_resnet18_five_at_28px_ends_in_1x1_maps():
    """R001:156-160: at 28 px (no upsampling) the last two residual blocks' outputs are 1x1;
    the count does not depend on the input (global average pool)."""
    model = create_model("resnet18_five", **_shape(1, 28, stem="imagenet")).eval()
    assert count_params(model) == 11_001_546
    shapes = {}
    for name in ("layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[-2:])))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    assert shapes == {"layer3": (2, 2), "layer4": (1, 1)}


def test_vgg16_bn_tricks_features_are_torchvisions_vgg16_bn_features():
    """R003:237-306: the report's VGG16 features are torchvision's vgg16_bn features layer for
    layer, so its ImageNet weights fit them: the same 91 tensors (13 convolutions x 2, 13
    BatchNorms x 5), names and shapes; only the classifier differs. No download: both models
    on the meta device."""
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.vgg16_bn(weights=None)
    ours = _meta("vgg16_bn_tricks", **_shape(3, 32))
    tv_features = {k: tuple(v.shape) for k, v in tv.state_dict().items() if k.startswith("features.")}
    our_features = {k: tuple(v.shape) for k, v in ours.state_dict().items() if k.startswith("features.")}
    assert len(tv_features) == 91 and our_features == tv_features
    assert set(ours.state_dict()) - set(our_features) == {
        f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert model_info("vgg16_bn_tricks").pretrained_from == ("vgg16_bn", ("features",))


def test_vgg16_bn_tricks_keeps_five_pools_and_flattens():
    """R003:237-334: five max pools at 32 px, flatten 512 -> 4096; larger inputs size the FC."""
    model = _meta("vgg16_bn_tricks", **_shape(3, 32))
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5 and model.stem is None
    assert model.classifier[0].in_features == 512
    assert _meta("vgg16_bn_tricks", **_shape(3, 64)).classifier[0].in_features == 512 * 2 * 2


def test_googlenet_without_batchnorm_keeps_pytorchs_initialisation():
    """torchvision's N(0, 0.01) weights suit its BatchNorm GoogLeNet; the paper layout (and the
    report's googlenet_five) without BatchNorm does not learn with them (mnist-five: loss 2.30
    for 5 epochs), so they keep each layer's PyTorch initialisation."""
    import torch

    from cnnbench.models import create_model

    torch.manual_seed(0)
    kw = dict(num_classes=10, in_chans=1, input_size=56, stem="imagenet")
    tv = create_model("googlenet", **kw).conv1.conv.weight.std().item()
    assert abs(tv - 0.01) < 0.002
    for name in ("googlenet_paper", "googlenet_five"):
        std = create_model(name, **kw).conv1.conv.weight.std().item()
        assert 0.05 < std < 0.12, (name, std)  # kaiming_uniform(a=sqrt(5)): 1/sqrt(3 * 49)
