"""The model registry: names, aliases, duplicates, keyword checking."""

from __future__ import annotations

import inspect
import re
from functools import partial

import pytest
from torch import nn

from cnnbench.errors import UserError
from cnnbench.models import create_model, list_models, model_info, register_model, resolve_model_name
from cnnbench.models import registry


def _numbers_by_value(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def test_at_least_twenty_models_in_natural_order_and_filtered():
    names = list_models()
    assert len(names) >= 20 and names == sorted(names, key=_numbers_by_value)
    assert list_models("resnet*") == ["resnet18", "resnet18_five", "resnet18_tricks", "resnet34",
                                      "resnet34_classics", "resnet50", "resnet101", "resnet152"]
    assert list_models("VGG16*") == ["vgg16", "vgg16_bn", "vgg16_bn_tricks", "vgg16_classics"]
    assert list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert list_models("nothing*") == []


def test_every_builder_takes_the_common_keywords():
    for name in list_models():
        params = inspect.signature(model_info(name).fn).parameters
        for key, default in (("num_classes", 1000), ("in_chans", 3), ("input_size", 224),
                             ("drop_rate", 0.0), ("stem", "auto")):
            assert params[key].default == default, (name, key)
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY, (name, key)
        assert model_info(name).doc.strip(), name


def test_model_info_fields():
    info = model_info("resnet50")
    assert (info.name, info.family) == ("resnet50", "resnet")
    assert "He" in info.doc and "stride_in_1x1" in info.doc
    assert model_info("simple_cnn").family == "lenet"


@pytest.mark.parametrize("spelling,name", [
    ("resnet18", "resnet18"), ("ResNet-18", "resnet18"), ("RESNET18", "resnet18"),
    ("VGG-16-BN", "vgg16_bn"), ("MobileNetV2", "mobilenet_v2"), ("LeNet-5", "lenet5"),
    ("LeNet", "lenet5"), ("ResNet", "resnet18"), ("VGG", "vgg16"), ("MobileNet", "mobilenet_v1"),
    ("AlexNet", "alexnet"), ("GoogLeNet", "googlenet"), ("Inception-v1", "googlenet"),
])
def test_resolve_model_name(spelling, name):
    assert resolve_model_name(spelling) == name
    assert model_info(spelling).name == name


def test_unknown_name_lists_close_matches():
    with pytest.raises(UserError, match=r"unknown model 'resnet19'.*resnet18"):
        create_model("resnet19")
    with pytest.raises(UserError, match="cnnbench models"):
        resolve_model_name("transformer")


def test_registry_refuses_duplicates():
    class Tiny(nn.Module):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18", Tiny)
    with pytest.raises(ValueError, match="already registered"):
        register_model("ResNet-18", Tiny)  # same name after normalisation
    before = dict(registry._REGISTRY)
    register_model("test_only_tiny", partial(Tiny))
    try:
        assert "test_only_tiny" in list_models()
        with pytest.raises(ValueError, match="already registered"):
            register_model("test_only_tiny", Tiny)
    finally:  # leave the registry as it was for the other tests
        registry._REGISTRY.pop("test_only_tiny")
        registry._NORMALISED.pop("testonlytiny")
    assert registry._REGISTRY == before


def test_unknown_keyword_and_stem_are_user_errors():
    with pytest.raises(UserError, match="no option width_mult.*zero_init_residual"):
        create_model("resnet18", width_mult=2.0)
    with pytest.raises(UserError, match="stem must be one of"):
        create_model("resnet18", stem="tiny")
    with pytest.raises(UserError, match="input_size"):
        create_model("resnet18", input_size=(0, 32))


def test_models_without_a_stem_switch_record_none():
    for name in ("lenet5", "simple_cnn", "alexnet_small", "fastnet"):
        assert create_model(name, num_classes=10, in_chans=1, input_size=28, stem="small").stem is None


def test_register_model_as_decorator():
    @register_model
    def test_only_decorated(*, num_classes=1000, in_chans=3, input_size=224, drop_rate=0.0, stem="auto"):
        """A one-layer test model."""
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    try:
        info = model_info("test-only-decorated")
        assert info.name == "test_only_decorated" and info.fn is test_only_decorated
        assert info.family == "test_model_registry" and "one-layer" in info.doc
        model = create_model("test_only_decorated", num_classes=3, in_chans=1, input_size=4)
        assert model.stem is None and model.model_name == "test_only_decorated"
    finally:
        registry._REGISTRY.pop("test_only_decorated")
        registry._NORMALISED.pop("testonlydecorated")


@pytest.mark.parametrize("name, kwargs", [
    ("googlenet", {"drop_rate": 0.4, "aux_logits": True}),  # dropout, BatchNorm, auxiliary heads
    ("lenet5", {"drop_rate": 0.5}),                           # a layer sized from the input
])
def test_the_build_check_leaves_the_weights_and_random_state_of_a_plain_build(name, kwargs):
    """create_model runs two images of zeros through the model it built (training mode): the
    weights, BatchNorm statistics and random state afterwards are those of building it alone."""
    import torch

    shape = dict(num_classes=10, in_chans=1, input_size=28, **kwargs)
    torch.manual_seed(3)
    checked = create_model(name, **shape)
    after_checked = torch.random.get_rng_state()
    torch.manual_seed(3)
    plain = model_info(name).fn(**shape)
    assert torch.equal(after_checked, torch.random.get_rng_state())
    assert checked.training
    theirs = plain.state_dict()
    for key, value in checked.state_dict().items():  # num_batches_tracked still 0, too
        assert torch.equal(value, theirs[key]), key


def test_the_build_check_runs_the_model_in_training_mode_on_the_input_size(monkeypatch):
    import torch

    seen = []
    real = registry._run_zeros
    monkeypatch.setattr(registry, "_run_zeros", lambda m, c, hw: seen.append((m.training, c, hw)) or real(m, c, hw))
    create_model("resnet18", num_classes=10, in_chans=3, input_size=(32, 24))
    assert seen == [(True, 3, (32, 24))]  # as built: in training mode
    modes = []
    model = create_model("googlenet", num_classes=10, in_chans=3, input_size=32, aux_logits=True)
    hook = model.register_forward_hook(lambda m, i, o: modes.append(m.training))
    real(model.eval(), 3, (32, 32))
    hook.remove()
    assert modes == [True] and not model.training  # run in training mode, then put back
    with pytest.raises(UserError, match="smallest that works is"):  # too small: the meta search
        create_model("vgg16_bn_tricks", num_classes=10, in_chans=1, input_size=28)
    assert torch.get_default_device().type == "cpu"


def test_model_kwargs_cannot_set_what_the_runs_own_options_set():
    from types import SimpleNamespace

    config = SimpleNamespace(model="lenet5", dropout=0.0, stem="auto", model_kwargs={"stem": "small"})
    spec = SimpleNamespace(num_classes=10, channels=1)
    with pytest.raises(UserError, match="^--model-kwargs cannot set stem: use --stem$"):
        registry.create_model_for(config, spec, (28, 28))
    config.model_kwargs = {"num_classes": 3, "drop_rate": 0.5}
    with pytest.raises(UserError, match="cannot set drop_rate, num_classes: use --dropout; "
                                        "num_classes comes from the dataset"):
        registry.create_model_for(config, spec, (28, 28))
