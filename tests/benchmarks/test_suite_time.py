"""benchmarks/suite_time.py with a stand-in suite: the counts and seconds it reads, the
yardstick around it, the CPU of processes the suite leaves behind, and a failing suite."""

from __future__ import annotations

import sys

import pytest

from benchmark_fixtures import load_script, positive, read_result, results, run_script  # noqa: F401


def test_suite_time(results, tmp_path, monkeypatch):
    """The suite's pytest seconds beside the yardstick timed before and after it (a stand-in
    suite here: a script that prints pytest's summary line)."""
    suite = tmp_path / "suite.py"
    # it leaves behind a process of its own that burns 0.3 s of CPU after the suite has ended
    # (as a SIGKILLed torchrun job's or Ray's daemons do): its CPU counts as the suite's
    suite.write_text(
        "import subprocess, sys\n"
        "busy = 'import time\\nwhile time.process_time() < 0.3: pass'\n"
        "subprocess.Popen([sys.executable, '-c', busy], start_new_session=True)\n"
        "print('==== 1177 passed, 2 skipped in 157.46s (0:02:37) ====')\n")
    args = ["--command", f"{sys.executable} {suite}", "--yardstick-steps", "1",
            "--yardstick-batch", "8", "--threads", "1", "--results-dir", str(results)]
    assert run_script("suite_time", args, monkeypatch) == 0
    rec = read_result(results, "suite_time")
    assert rec["target_pytest_s"] == 150 and rec["median_pytest_s"] == 157.46 and rec["all_passed"]
    [run] = rec["runs"]
    assert (run["passed"], run["skipped"], run["failed"], run["returncode"]) == (1177, 2, 0, 0)
    assert run["orphans_counted"] and run["orphans_reaped"] == 1
    assert run["cpu_user_s"] + run["cpu_system_s"] >= 0.3
    assert positive(run["wall_s"], run["yardstick_epoch_s_before"], run["yardstick_epoch_s_after"])
    mean = (run["yardstick_epoch_s_before"] + run["yardstick_epoch_s_after"]) / 2
    assert run["pytest_per_yardstick_epoch"] == pytest.approx(157.46 / mean, rel=0.01)
    assert "batch (8), 1 steps" in rec["yardstick"]

    # a suite that fails, or prints no summary, is said so and fails the benchmark
    module = load_script("suite_time", monkeypatch)
    assert module.pytest_summary("3 failed, 1174 passed, 2 skipped in 160.00s") == {
        "passed": 1174, "skipped": 2, "failed": 3, "pytest_s": 160.0}
    suite.write_text("import sys; print('collection error'); sys.exit(2)\n")
    (results / "suite_time-cpu.json").unlink()
    assert run_script("suite_time", args, monkeypatch, module) == 1
    [run] = read_result(results, "suite_time")["runs"]
    assert run["returncode"] == 2 and run["pytest_s"] is None and "collection error" in run["output_tail"]
