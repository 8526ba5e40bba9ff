"""cnnbench.devices: ``auto`` device and precision, decided in one place."""

import json
from types import SimpleNamespace

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


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """The bf16 probe replaced by a speedup the test sets (``probe.speedup``), its calls
    counted; a fresh cache root and no verdicts remembered by this process."""
    state = SimpleNamespace(speedup=1.6, calls=0, cache=tmp_path / "cache")

    def measure():
        state.calls += 1
        return state.speedup

    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    monkeypatch.setattr(devices, "_speedups", {})
    monkeypatch.setenv("CNNBENCH_CACHE", str(state.cache))
    return state


@pytest.mark.parametrize("avx512_bf16, amx, speedup, expected", [
    (True, False, 1.6, "bf16"), (False, True, 1.6, "bf16"), (True, True, 1.1, "bf16"),
    (True, False, 1.09, "off"), (True, False, 0.7, "off"), (False, False, 1.6, "off")])
def test_amp_auto_on_a_cpu_is_bf16_only_where_native_and_measured_faster(
        monkeypatch, probe, avx512_bf16, amx, speedup, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    probe.speedup = speedup
    cpu = torch.device("cpu")
    assert devices.resolve_amp("auto", cpu) == expected
    assert probe.calls == (1 if avx512_bf16 or amx else 0)  # no bf16 instructions: nothing to measure
    assert devices.resolve_amp("off", cpu) == "off" and devices.resolve_amp("fp16", cpu) == "fp16"
    assert devices.resolve_amp("bf16", cpu) == "bf16"  # asked for: never second-guessed
    x = torch.randn(4, 8)
    with autocast(cpu, "auto"):
        y = torch.nn.functional.linear(x, torch.randn(3, 8))
    assert y.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)
    assert probe.calls <= 1  # measured once per process


def test_the_cpu_verdict_is_measured_once_per_cpu_torch_and_thread_count(monkeypatch, probe):
    """Every run, every process of a job and a resumed run decide alike: the measurement is
    remembered in the cache root, keyed by CPU model, torch version and thread count."""
    threads = torch.get_num_threads()
    assert devices.cpu_bf16_speedup() == 1.6 and probe.calls == 1
    memo = json.loads((probe.cache / devices.BF16_MEMO).read_text())
    key = f"{devices.cpu_name()} | torch {torch.__version__} | threads {threads}"
    assert list(memo) == [key] and memo[key]["speedup"] == 1.6 and memo[key]["measured"]
    monkeypatch.setattr(devices, "_speedups", {})  # a new process: read from the cache
    probe.speedup = 0.5
    assert devices.cpu_bf16_speedup() == 1.6 and probe.calls == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)  # other threads: measured
    assert devices.cpu_bf16_speedup() == 0.5 and probe.calls == 2
    assert len(json.loads((probe.cache / devices.BF16_MEMO).read_text())) == 2  # both kept
    monkeypatch.setattr(devices, "cpu_name", lambda: "Another CPU")  # another CPU: measured
    probe.speedup = 1.3
    assert devices.cpu_bf16_speedup() == 1.3 and probe.calls == 3
    # a damaged memo is measured again and rewritten; a cache that cannot be written only
    # costs the measurement
    monkeypatch.setattr(devices, "_speedups", {})
    (probe.cache / devices.BF16_MEMO).write_text("{not json")
    assert devices.cpu_bf16_speedup() == 1.3 and probe.calls == 4
    assert json.loads((probe.cache / devices.BF16_MEMO).read_text())
    monkeypatch.setattr(devices, "_speedups", {})
    blocked = probe.cache / "file"
    blocked.write_text("")
    monkeypatch.setenv("CNNBENCH_CACHE", str(blocked))  # a file where the folder should be
    assert devices.cpu_bf16_speedup() == 1.3 and probe.calls == 5


def test_the_bf16_probe_measures_a_ratio_and_leaves_the_caller_alone():
    """The real measurement (one step of each precision after the warm-up): a positive ratio;
    the caller's random stream, thread count and grad mode untouched."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    with torch.no_grad():  # the probe trains even where its caller does not
        speedup = devices.measure_bf16_speedup(steps=1)
    assert 0 < speedup < float("inf")
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert torch.is_grad_enabled()


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
