"""cnnbench.devices: ``auto`` device and precision, decided in one place."""

import pytest
import torch

from cnnbench import devices
from cnnbench.errors import UserError
from cnnbench.devices import autocast


def test_auto_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.device_type("auto") == "cpu" and devices.device_type("cuda:1") == "cuda"
    with pytest.raises(UserError, match="no CUDA GPU"):
        devices.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")
    assert devices.device_type("auto") == "cuda"


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"),
                                                         (False, False, "off")])
def test_amp_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = torch.device("cpu")
    assert devices.resolve_amp("auto", cpu) == expected
    assert devices.resolve_amp("off", cpu) == "off" and devices.resolve_amp("fp16", cpu) == "fp16"
    x = torch.randn(4, 8)
    with autocast(cpu, "auto"):
        y = torch.nn.functional.linear(x, torch.randn(3, 8))
    assert y.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_amp_auto_on_cuda_is_bf16_from_ampere_on(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counts
    for capability, expected in (((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "off"), ((7, 0), "off")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert devices.resolve_amp("auto", torch.device("cuda:1")) == expected


def test_a_value_that_is_no_device_is_left_to_the_config_check():
    from cnnbench.config.resolve import resolve_config

    assert devices.device_type("gpu") == "cpu"
    with pytest.raises(UserError, match="device"):
        resolve_config({"recipe": "fast", "dataset": "cifar10", "device": "gpu"})
