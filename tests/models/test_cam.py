"""cnnbench.models.cam: Grad-CAM puts its mass where the label is, works for every family at
the layer the registry names, falls back to a spatial layer, then to gradient saliency."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.models import create_model
from cnnbench.models.cam import _output_shapes, cam_layer, grad_cam
from cnnbench.models.registry import FAMILIES, list_models, model_info

SIZE, QUARTER = 32, 16


def region_task(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """32 x 32 images; only the top-left quarter says the class: a horizontal bar there is
    class 0, a vertical one class 1. Six 3 x 3 squares lie anywhere else, saying nothing."""
    x = 0.1 * torch.rand(n, 1, SIZE, SIZE, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        for _ in range(6):
            while True:
                r, c = (int(v) for v in torch.randint(0, SIZE - 3, (2,), generator=g))
                if r >= QUARTER or c >= QUARTER:
                    break
            x[i, 0, r:r + 3, c:c + 3] = 1
        r, c = (int(v) for v in torch.randint(2, QUARTER - 7, (2,), generator=g))
        if y[i] == 0:
            x[i, 0, r + 2, c:c + 6] = 1
        else:
            x[i, 0, r:r + 6, c + 2] = 1
    return (x - 0.2) / 0.3, y


def test_the_heat_map_lies_on_the_region_that_carries_the_label():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model("fastnet", num_classes=2, in_chans=1, input_size=SIZE, widths=[8, 16, 16])
    x, y = region_task(1024, g)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _epoch in range(2):
        for i in range(0, len(y), 64):
            loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_x, test_y = region_task(256, g)
    model.eval()
    with torch.no_grad():
        assert (model(test_x).argmax(1) == test_y).float().mean() > 0.95  # it learned the task
    result = grad_cam(model, test_x, target=test_y)
    assert result["method"] == "grad-cam" and result["layer"] == cam_layer(model, test_x)
    maps = result["maps"]
    assert maps.shape == (256, SIZE, SIZE) and maps.min() >= 0
    assert torch.allclose(maps.amax((1, 2)), torch.ones(256))
    total = maps.sum((1, 2))
    share = {(a, b): (maps[:, a:a + QUARTER, b:b + QUARTER].sum((1, 2)) / total).mean().item()
             for a in (0, QUARTER) for b in (0, QUARTER)}
    label, others = share.pop((0, 0)), max(share.values())
    # the label's quarter holds the most heat, over twice any other quarter's (measured: 0.54
    # against 0.24 at most; a 4 x 4 map, upsampled, spills over its borders)
    assert label > 0.45 and label > 2 * others, (label, share)
    peaks = maps.flatten(1).argmax(1)
    in_quarter = ((peaks // SIZE < QUARTER) & (peaks % SIZE < QUARTER)).float().mean()
    assert in_quarter > 0.6, in_quarter
    # the map is the class's: for the class an image is not, the bar is evidence against
    wrong = grad_cam(model, test_x, target=1 - test_y)["maps"]
    wrong_share = (wrong[:, :QUARTER, :QUARTER].sum((1, 2)) / wrong.sum((1, 2)).clamp(min=1e-12)).mean()
    assert wrong_share < label - 0.1, (wrong_share, label)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gets_a_heat_map(family):
    name = next(m for m in list_models() if model_info(m).family == family)
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_chans=3, input_size=32)
    x = torch.randn(2, 3, 32, 32)
    result = grad_cam(model, x)
    assert result["maps"].shape == (2, 32, 32) and torch.isfinite(result["maps"]).all()
    assert result["layer"] is not None and result["method"] == "grad-cam", name
    assert result["classes"].tolist() == model.eval()(x).argmax(1).tolist()
    assert model.training is False  # put back as it was (eval above)


def test_without_a_spatial_map_the_input_gradient_is_drawn():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 1.0
    result = grad_cam(model, x, target=torch.tensor([0]))
    assert result["method"] == "saliency" and result["layer"] is None
    weight = model[1].weight[0].detach().abs().view(4, 4)
    assert torch.allclose(result["maps"][0], weight / weight.max())


def test_the_layer_is_a_whole_block_not_one_of_its_branches():
    x = torch.randn(1, 3, 32, 32)
    picked = {name: cam_layer(create_model(name, num_classes=5, in_chans=3, input_size=32), x)
              for name in ("googlenet", "resnet18", "lenet5")}
    # GoogLeNet's last inception block concatenates four branches: the map is all of them
    assert picked == {"googlenet": "inception5b", "resnet18": "layer4", "lenet5": "features"}


def test_every_registered_model_names_a_layer_it_has():
    from cnnbench.models.registry import _target

    by_class = {}  # module names come from the class: one model of each class is built
    for name in list_models():
        layer = model_info(name).cam_layer
        assert layer, f"{name}: no cam_layer in the registry (set the family class's cam_layer)"
        by_class.setdefault((_target(model_info(name).fn), layer), name)
    assert len(by_class) >= len(FAMILIES)
    for name in by_class.values():
        layer = model_info(name).cam_layer
        with torch.device("meta"):
            model = create_model(name, num_classes=10, in_chans=3, input_size=224)
        model.get_submodule(layer)  # raises when the model has no such module
        x = torch.empty(1, 3, 224, 224, device="meta")
        assert cam_layer(model, x, layer) == layer, name
        # and it is the right one: the last of the model's own blocks that convolves and
        # still has a spatial map (not a pool or head after it, not an earlier block)
        spatial = {n for n, shape in _output_shapes(model, x) if len(shape) == 4 and shape[2] * shape[3] > 1}
        convolving = [n for n, child in model.named_children() if n in spatial and any(
            isinstance(m, nn.Conv2d) for m in child.modules())]
        assert layer == convolving[-1], (name, layer, convolving[-3:])


def test_the_named_layer_wins_over_the_rule():
    # VGG-16 at 224: the rule alone takes the adaptive pool after `features`; the registry's
    # `features` is the last convolutional block's map
    with torch.device("meta"):
        model = create_model("vgg16", num_classes=10, in_chans=3, input_size=224)
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert cam_layer(model, x) == "avgpool"
    assert cam_layer(model, x, model_info("vgg16").cam_layer) == "features"


@pytest.mark.parametrize("name, expected", [("vgg16", "features.22"),
                                            ("mobilenet_v2_classics", "features.13")])
def test_a_named_layer_shrunk_to_one_pixel_gives_way_to_its_last_spatial_child(name, expected):
    # on 28 px MNIST these networks pool `features` down to 1 x 1: nothing to place. The
    # last whole child block that still has a map is taken, not a part of one
    # (mobilenet_v2_classics' rule-only answer is `features.14.conv.2`, inside a block)
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_chans=1, input_size=28)
    x = torch.empty(1, 1, 28, 28, device="meta")
    assert cam_layer(model, x, model_info(name).cam_layer) == expected
