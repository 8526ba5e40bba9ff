"""cnnbench.training.machine: glibc keeps a training step's freed buffers in the process;
determinism; building and evaluating a model leaves the compiler unimported; threads on cores
other jobs already use; the git commit a run records."""

import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnnbench.training import setup as build_module
from cnnbench.training.machine import git_commit
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401

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
@pytest.mark.slow(seconds=2)  # started first, so that two workers end together
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


AN_EVALUATION = """
import sys, torch
from cnnbench.models import create_model
for name in ("lenet5", "resnet18", "googlenet"):  # a layer sized from the input, BatchNorm, ReLU
    model = create_model(name, num_classes=10, in_chans=1, input_size=28).eval()
    with torch.inference_mode():
        model(torch.randn(2, 1, 28, 28))
print(sorted(m for m in ("torch._dynamo", "torch._inductor", "sympy") if m in sys.modules))
"""


def test_building_and_evaluating_a_model_does_not_import_the_compiler():
    """The models' build check and an evaluation leave torch.compile's modules unimported:
    torch._dynamo, torch._inductor and sympy cost about 0.8 s of CPU in every `cnnbench eval`,
    `predict`, `export` or `serve` process (a ReLU or BatchNorm on the meta device imported
    them). A training run imports them anyway: torch.optim's constructor does."""
    done = subprocess.run([sys.executable, "-c", AN_EVALUATION], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- threads on a machine other jobs already use ---------------------------------------------

def test_busy_cores_is_the_other_processes_share_of_all_cores(monkeypatch):
    from cnnbench.training import machine

    # 2 cores, 100 ticks in the window, 50 of them busy: one core's worth
    readings = iter([(1_000, 10_000), (1_050, 10_100)])
    monkeypatch.setattr(machine, "_cpu_ticks", lambda: next(readings))
    monkeypatch.setattr(machine.time, "sleep", lambda s: None)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    assert machine.busy_cores() == pytest.approx(1.0)
    monkeypatch.setattr(machine, "_cpu_ticks", lambda: None)  # no /proc/stat
    assert machine.busy_cores() is None


def test_proc_stat_is_read_as_busy_and_all_ticks(tmp_path, monkeypatch):
    from cnnbench.training import machine

    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 5 20 1000 30 2 3 400 0 0\ncpu0 50 2 10 500 15 1 1 200 0 0\n")
    real = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: stat if p == "/proc/stat" else real(p))
    # busy: user + nice + system + irq + softirq; all: those and idle + iowait (no steal)
    assert machine._cpu_ticks() == (130, 1160)


@pytest.mark.parametrize("default, cores, busy, threads", [
    (2, 2, 0.0, 2), (2, 2, 0.4, 2), (2, 2, 1.0, 1), (2, 2, 1.9, 1), (2, 2, 2.0, 1),
    (8, 16, 4.0, 6), (8, 16, 15.0, 1), (4, 4, 2.0, 2), (1, 2, 0.0, 1)])
def test_pick_threads_leaves_the_busy_cores_alone(default, cores, busy, threads):
    from cnnbench.training.machine import pick_threads

    assert pick_threads(default, cores, busy) == threads


def test_a_run_on_a_busy_machine_says_so_and_uses_fewer_threads(tiny_folder, monkeypatch, tmp_path):
    """A fake load reading: one of two cores already busy when the run starts."""
    import torch

    from cnnbench.training import machine, train_run

    load = {"busy": 1.0}
    reads = []
    monkeypatch.setattr(machine, "busy_cores", lambda: reads.append(1) or load["busy"])
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(machine, "_default_threads", None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        options = quick_options(tiny_folder, epochs=1, num_threads=0)
        busy = train_run(resolve(options), out_dir=tmp_path / "busy", progress=False)
        assert busy["num_threads"] == 1 and torch.get_num_threads() == 1
        line = ("cnnbench: other processes keep 1.0 of 2 cores busy: training with 1 thread "
                "instead of 2 (threads that compete for cores slow both jobs many times over); "
                "--num-threads 2 uses all 2")
        assert busy["threads_note"] == line[len("cnnbench: "):]
        assert line in (tmp_path / "busy" / "train.log").read_text()
        # the load gone, the next run in the same process is back to all threads, silently
        load["busy"] = 0.3
        idle = train_run(resolve(options), out_dir=tmp_path / "idle", progress=False)
        assert idle["num_threads"] == 2 and idle["threads_note"] is None
        assert "cores busy" not in (tmp_path / "idle" / "train.log").read_text()
        # threads asked for are threads used: the load is not read
        load["busy"] = 1.5
        asked = train_run(resolve({**options, "num_threads": 2}), out_dir=tmp_path / "asked",
                          progress=False)
        assert asked["num_threads"] == 2 and asked["threads_note"] is None
        assert len(reads) == 2
    finally:
        torch.set_num_threads(before)


def resolve(options):
    from cnnbench.config.resolve import resolve_config

    return resolve_config(options)


def test_git_commit_names_the_checkout_and_says_when_it_is_modified():
    import cnnbench

    src = Path(cnnbench.__file__).resolve().parent
    inside = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True,
                            text=True)
    if inside.returncode != 0:
        assert git_commit() is None  # an installed copy outside a checkout
        return
    commit = git_commit()
    assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", commit)
    assert commit.startswith(inside.stdout.strip())


def test_cnnbench_asks_git_for_its_own_commit_once_per_process(monkeypatch):
    """Every run records the commit: asked git each time, a test suite or a study of hundreds
    of runs started hundreds of git processes. An ask that failed (a timeout on a busy
    machine) is not kept; another checkout is asked every time."""
    import subprocess

    from cnnbench.training import machine

    asked, answers = [], [subprocess.TimeoutExpired("git", 5), "abc1234"]

    def ask(here):
        asked.append(here)
        answer = answers.pop(0) if answers else "abc1234"
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(machine, "_ask_git", ask)
    machine._own_commit.cache_clear()
    try:
        assert git_commit() is None  # git timed out: no commit, and nothing kept
        assert [git_commit() for _ in range(3)] == ["abc1234"] * 3
        assert len(asked) == 2
        git_commit("/somewhere/else")
        git_commit("/somewhere/else")
        assert len(asked) == 4
    finally:
        machine._own_commit.cache_clear()  # the real answer again for the tests after this one


def test_git_commit_is_dirty_for_code_changes_only(tmp_path):
    """A modified result file keeps the commit clean (a benchmark writes one result, then
    measures the next with the same code); a modified code file makes it -dirty."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "r-cpu.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = git("rev-parse", "--short", "HEAD").stdout.strip()
    assert git_commit(tmp_path / "src") == head
    (tmp_path / "benchmarks" / "results" / "r-cpu.json").write_text('{"acc": 1}\n')
    assert git_commit(tmp_path / "src") == head  # a result changed, not the code
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "src") == head + "-dirty"
