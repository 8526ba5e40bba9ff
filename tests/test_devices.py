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


def test_the_cpu_verdict_is_measured_once_per_cpu_and_torch_and_kept(monkeypatch, probe):
    """Every run, every process of a job, a resumed run and an evaluation decide alike: the first
    measurement is remembered in the cache root, keyed by the CPU and the torch version, whatever
    the thread count of later processes."""
    assert devices.cpu_bf16_speedup() == 1.6 and probe.calls == 1
    memo = json.loads((probe.cache / devices.BF16_MEMO).read_text())
    key = f"{devices.cpu_identity()} | torch {torch.__version__}"
    assert list(memo) == [key] and memo[key]["speedup"] == 1.6 and memo[key]["measured"]
    assert memo[key]["threads"] == torch.get_num_threads()
    monkeypatch.setattr(devices, "_speedups", {})  # a new process: read from the cache
    probe.speedup = 0.5
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)  # at another thread count too
    assert devices.cpu_bf16_speedup() == 1.6 and probe.calls == 1
    monkeypatch.setattr(devices, "cpu_identity", lambda: "Another CPU")  # another CPU: measured
    probe.speedup = 1.3
    assert devices.cpu_bf16_speedup() == 1.3 and probe.calls == 2
    assert len(json.loads((probe.cache / devices.BF16_MEMO).read_text())) == 2  # both kept


def test_the_first_verdict_stored_is_the_one_every_process_takes(monkeypatch, probe):
    """A process that measured while another stored its verdict takes the stored one."""
    path = probe.cache / devices.BF16_MEMO
    key = f"{devices.cpu_identity()} | torch {torch.__version__}"

    def measured_meanwhile():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({key: {"speedup": 0.8, "threads": 1, "measured": "earlier"}}))
        return 1.6

    monkeypatch.setattr(devices, "measure_bf16_speedup", measured_meanwhile)
    assert devices.cpu_bf16_speedup() == 0.8
    assert json.loads(path.read_text())[key]["speedup"] == 0.8


def test_a_damaged_memo_an_unwritable_cache_and_a_failing_probe(monkeypatch, probe):
    probe.cache.mkdir(parents=True)
    (probe.cache / devices.BF16_MEMO).write_text("{not json")  # measured again, rewritten
    assert devices.cpu_bf16_speedup() == 1.6 and probe.calls == 1
    assert json.loads((probe.cache / devices.BF16_MEMO).read_text())
    monkeypatch.setattr(devices, "_speedups", {})
    blocked = probe.cache / "file"
    blocked.write_text("")
    monkeypatch.setenv("CNNBENCH_CACHE", str(blocked))  # a file where the folder should be
    assert devices.cpu_bf16_speedup() == 1.6 and probe.calls == 2  # only costs the measurement
    monkeypatch.setattr(devices, "_speedups", {})
    monkeypatch.setenv("CNNBENCH_CACHE", str(probe.cache / "other"))

    tried = []

    def fails():
        tried.append(1)
        raise RuntimeError("no bf16 kernels here")

    monkeypatch.setattr(devices, "measure_bf16_speedup", fails)
    assert devices.cpu_bf16_speedup() == 0.0  # fp32, and nothing stored
    assert not (probe.cache / "other" / devices.BF16_MEMO).exists()
    assert devices.cpu_bf16_speedup() == 0.0 and tried == [1]  # not tried again in this process


def test_the_cpu_identity_tells_vm_cpus_of_one_name_apart(monkeypatch):
    import pathlib

    cpuinfo = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu family\t: 6\n"
               "model\t\t: {model}\nstepping\t: 2\nflags\t\t: fpu avx512f {flags}\n\n"
               "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nmodel\t\t: 1\n")
    real = pathlib.Path.read_text

    def identity(model, flags):
        monkeypatch.setattr(pathlib.Path, "read_text", lambda self, *a, **k: cpuinfo.format(
            model=model, flags=flags) if str(self) == "/proc/cpuinfo" else real(self, *a, **k))
        devices._cpuinfo.cache_clear()  # read once per process: here, once per CPU
        try:
            return devices.cpu_identity()
        finally:
            devices._cpuinfo.cache_clear()

    plain = identity(207, "avx512_bf16")
    assert plain.startswith("Intel(R) Xeon(R) Processor cpu family 6 model 207 stepping 2 flags avx512_bf16 ")
    assert identity(207, "avx512_bf16 amx_bf16 amx_tile") != plain  # AMX shown: another verdict
    assert identity(143, "avx512_bf16") != plain


def test_the_bf16_probe_measures_a_ratio_and_leaves_the_caller_alone(monkeypatch):
    """The real measurement (one step of each precision after the warm-up): a positive ratio,
    even where the caller turned gradients off; the caller's random streams (a GPU's too),
    thread count and grad mode untouched."""
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    with torch.no_grad():
        assert 0 < devices.measure_bf16_speedup(steps=1) < float("inf")
        assert not torch.is_grad_enabled()
    with torch.inference_mode():  # as in evaluate()
        assert 0 < devices.measure_bf16_speedup(steps=1) < float("inf")
        assert torch.is_inference_mode_enabled()
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert reseeded == []


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
