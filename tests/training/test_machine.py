"""cnnbench.training.machine: glibc keeps a training step's freed buffers in the process."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from cnnbench.training import setup as build_module

# Allocate 20 buffers of 4 MB and free them all, ten times over, as a training step allocates
# its activations and backward frees them; print the minor page faults (pages the kernel had to
# map and zero) it cost, with glibc's defaults and then kept (one process: torch starts once).
_CHURN = textwrap.dedent("""
    import resource
    import torch
    from cnnbench.training.machine import keep_freed_memory

    def faults():
        xs = [torch.ones(1 << 20) for _ in range(20)]  # the first touch costs faults either way
        del xs
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            xs = [torch.ones(1 << 20) for _ in range(20)]  # 4 MB each, 80 MB in all
            del xs
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    default = faults()
    ok = keep_freed_memory()
    print(ok, default, faults())
""")


def _faults() -> tuple[str, int, int]:
    ok, default, kept = subprocess.run([sys.executable, "-c", _CHURN], capture_output=True,
                                       text=True, check=True).stdout.split()
    return ok, int(default), int(kept)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or any(k.startswith("MALLOC_") for k in os.environ)
                    or "LD_PRELOAD" in os.environ,
                    reason="needs glibc's malloc, untuned (no MALLOC_* variables, no preloaded allocator)")
@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ,
                    reason="under mutation testing: it measures a subprocess, which no mutant of "
                           "the mutated modules reaches, and its fault count varies with the "
                           "heap's layout (it failed once beside the mutants)")
@pytest.mark.slow  # started first, so that two workers end together
def test_freed_buffers_stay_in_the_process():
    ok, default, kept = _faults()
    assert ok == "True"
    # glibc's default trims freed memory off its heap and maps and zeroes it anew (here 21,000
    # to 205,000 faults over the 10 rounds, depending on the heap's layout; once, beside other
    # jobs, only 1,000); kept, the rounds reuse the first round's pages (1,000 to 3,100 seen)
    assert kept < 5_000, (default, kept)  # 10 rounds x 80 MB map ~200,000 pages when not kept
    if default > 10_000:
        assert kept < default / 5, (default, kept)


def test_cpu_training_keeps_freed_memory(monkeypatch, tiny_mnist_env):
    from cnnbench.config.resolve import resolve_config

    calls = []
    monkeypatch.setattr(build_module, "keep_freed_memory", lambda: calls.append(1) or True)
    build_module.build_training(resolve_config({"device": "cpu", "limit_train": 64, "limit_eval": 32,
                                                "epochs": 1}))
    assert calls == [1]


def test_determinism_is_switched_on_and_off():
    import torch

    from cnnbench.training.machine import set_determinism

    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_determinism(True)
        assert torch.are_deterministic_algorithms_enabled()
        set_determinism(False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)
